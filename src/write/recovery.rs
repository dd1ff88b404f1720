//! What a mount does with the journal entries an earlier daemon left behind (it was
//! killed, ran out of memory, or the machine rebooted), and what `xosfs recover` does.
//!
//! - `closed`: the file was complete and its writer was told so: it is uploaded now,
//!   resuming nothing but the bytes (its multipart upload, if any, is aborted and the
//!   file sent again); a conflict stores it under a conflict name, as any upload.
//! - `open`: the file may be incomplete: never stored over the object. An entry with
//!   nothing unsaved is dropped; one with data is kept for `xosfs recover`.
//! - `failed`: the upload failed and the writer was told: kept for `xosfs recover`.
//! - `unlinked`: nothing to store; dropped.
//!
//! Kept entries (`open`, `failed`) are removed once older than `--keep-failed`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::journal::{age, has_unsaved, Claimed, Found, Record, State};
use super::{WriteConfig, WriteError, WriterHandle};
use crate::store::ObjectStore;

/// What a recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Files uploaded (or kept under a conflict name).
    pub uploaded: usize,
    /// Uploads that failed again: their entries stay for the next mount.
    pub failed: usize,
    /// Entries kept for `xosfs recover`.
    pub kept: usize,
    /// Entries dropped: nothing to store, or expired.
    pub dropped: usize,
}

/// How often a mount looks again for closed files whose upload failed (the store was
/// unreachable for longer than the retries last).
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

/// At mount: settles every entry of this mount's store whose writer is gone; then, every
/// [`RETRY_EVERY`], uploads again the closed files whose upload failed meanwhile.
pub async fn recover_and_retry(client: Arc<dyn ObjectStore>, cfg: Arc<WriteConfig>, keep_failed: Duration) {
    recover(client.clone(), cfg.clone(), keep_failed).await;
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        upload_closed(client.clone(), cfg.clone()).await;
    }
}

/// Uploads the closed files of this mount's store whose writer is gone.
pub async fn upload_closed(client: Arc<dyn ObjectStore>, cfg: Arc<WriteConfig>) -> Recovered {
    pass(client, cfg, None).await
}

/// Settles every entry of this mount's store whose writer is gone. Uploads run as
/// writers, so an unmount waits for them.
pub async fn recover(client: Arc<dyn ObjectStore>, cfg: Arc<WriteConfig>, keep_failed: Duration) -> Recovered {
    pass(client, cfg, Some(keep_failed)).await
}

/// One pass over the journal: every entry, or (`keep_failed` = `None`) closed ones only.
async fn pass(client: Arc<dyn ObjectStore>, cfg: Arc<WriteConfig>, keep_failed: Option<Duration>) -> Recovered {
    let mut done = Recovered::default();
    let found = match cfg.journal.list() {
        Ok(found) => found,
        Err(e) => {
            error!(dir = %cfg.journal.dir().display(), "cannot read the journal: {e}");
            return done;
        }
    };
    let mut closing = Vec::new();
    let ours = |f: &Found| !f.live && f.record.store == *cfg.journal.store();
    let wanted = |f: &Found| keep_failed.is_some() || f.record.state == State::Closed;
    for entry in found.into_iter().filter(|f| ours(f) && wanted(f)) {
        match settle(&client, &cfg, entry, keep_failed.unwrap_or(Duration::MAX)).await {
            Settled::Upload(writer) => closing.push(writer),
            Settled::Kept => done.kept += 1,
            Settled::Dropped => done.dropped += 1,
            Settled::Busy => {}
        }
    }
    for (key, writer) in closing {
        match writer.close().await {
            Ok(_) => {
                info!(key = %key, "recovered: a file closed before the daemon stopped is stored now");
                done.uploaded += 1;
            }
            // The writer logged why; a conflict kept the data under another name.
            Err(WriteError::Failed(e)) if e.kind == crate::store::ErrorKind::PreconditionFailed => done.uploaded += 1,
            Err(_) => done.failed += 1,
        }
    }
    if done != Recovered::default() {
        info!(
            uploaded = done.uploaded,
            failed = done.failed,
            kept = done.kept,
            dropped = done.dropped,
            "journal recovery done"
        );
    }
    done
}

enum Settled {
    Upload((String, WriterHandle)),
    Kept,
    Dropped,
    /// Taken by someone else meanwhile.
    Busy,
}

/// Aborts the multipart upload a dead writer's record names, and forgets it.
pub async fn abort_interrupted_upload(client: &dyn ObjectStore, record: &mut Record) {
    if let Some(id) = record.upload_id.take() {
        if let Err(e) = client.abort_multipart_upload(&record.key, &id).await {
            warn!(key = %record.key, upload_id = %id, "cannot abort the interrupted upload: {e}");
        }
    }
}

async fn settle(client: &Arc<dyn ObjectStore>, cfg: &Arc<WriteConfig>, found: Found, keep_failed: Duration) -> Settled {
    let journal = &cfg.journal;
    let mut claimed = match journal.claim(&found.id) {
        Ok(Some(c)) => c,
        Ok(None) => return Settled::Busy,
        Err(e) => {
            warn!(entry = %found.id, "cannot take the journal entry: {e}");
            return Settled::Busy;
        }
    };
    let (key, state) = (claimed.record.key.clone(), claimed.record.state);
    let expired = age(claimed.record.updated) > keep_failed;
    let dropped = match state {
        State::Unlinked => true,
        State::Open | State::Failed => !has_unsaved(&claimed.ops) || expired,
        State::Closed => false,
    };
    // The upload of a dead writer is aborted and the file sent again from the staging
    // file, unless some of its parts are the only copy of their bytes (released from the
    // staging file): then it is finished, and kept until then.
    if dropped || claimed.record.released.is_empty() {
        abort_interrupted_upload(&**client, &mut claimed.record).await;
    }
    let drop_entry = |claimed: Claimed| {
        journal.remove(&claimed.id);
        Settled::Dropped
    };
    match state {
        State::Unlinked => drop_entry(claimed),
        State::Closed => match WriterHandle::spawn_recovered(client.clone(), cfg.clone(), claimed) {
            Ok(writer) => Settled::Upload((key, writer)),
            Err(e) => {
                warn!(key = %key, entry = %found.id, "cannot reopen the journal entry: {e}");
                Settled::Busy
            }
        },
        // Everything it held was stored before the daemon stopped.
        State::Open | State::Failed if !has_unsaved(&claimed.ops) => drop_entry(claimed),
        State::Open | State::Failed if expired => {
            warn!(key = %key, ?state, "a file not stored, kept longer than --keep-failed, is removed from the cache directory");
            drop_entry(claimed)
        }
        State::Open | State::Failed => {
            if let Err(e) = journal.save_claimed(&claimed) {
                warn!(key = %key, "cannot update the journal entry: {e}");
            }
            warn!(key = %key, ?state, "a file the last daemon did not store is kept in the cache directory: see xosfs recover --list");
            Settled::Kept
        }
    }
}
