//! `xosfs recover`: the files the cache directory kept (uploads that failed, files open
//! when a daemon died), listed, uploaded over their objects, or dropped.

use std::sync::Arc;

use crate::store::ObjectStore;
use crate::write::journal::{age, has_unsaved, Found, Journal, State};
use crate::write::recovery::abort_interrupted_upload;
use crate::write::{WriteConfig, WriteError, WriterHandle};

/// One line per entry: state, size held, age, bucket and key, and why it is kept.
pub fn lines(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .map(|f| {
            let r = &f.record;
            let state = match r.state {
                State::Open => "open",
                State::Closed => "closed",
                State::Failed => "failed",
                State::Unlinked => "unlinked",
            };
            let mut note = String::new();
            if f.live {
                note.push_str("  (a running mount holds it)");
            } else if r.state == State::Closed {
                note.push_str("  (the next mount of its bucket uploads it)");
            }
            if let Some(e) = &r.error {
                note.push_str(&format!("  error: {e}"));
            }
            format!(
                "{state:<8} {:>10} {:>6}  {}  [{}]{note}",
                human_size(f.staged),
                human_age(age(r.updated).as_secs()),
                // An account mount's keys start with their bucket.
                match r.store.bucket.as_str() {
                    "" => r.key.clone(),
                    bucket => format!("{bucket}:{}", r.key),
                },
                f.id
            )
        })
        .collect()
}

/// The entry `what` names: its key (with or without a leading `/`), or its id.
pub fn pick<'a>(found: &'a [Found], what: &str) -> Result<&'a Found, String> {
    if let Some(f) = found.iter().find(|f| f.id == what) {
        return Ok(f);
    }
    let key = what.trim_start_matches('/');
    let matching: Vec<&Found> = found.iter().filter(|f| f.record.key == key).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no kept file named {what} (see xosfs recover --list)")),
        many => Err(format!(
            "{} kept files are named {what}: name one by its id ({})",
            many.len(),
            many.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Uploads entry `id` over its object; the line to print, or why not.
pub async fn publish(client: Arc<dyn ObjectStore>, cfg: Arc<WriteConfig>, id: &str) -> Result<String, String> {
    let mut claimed = cfg.journal.claim(id).map_err(|e| e.to_string())?.ok_or_else(in_use)?;
    let key = claimed.record.key.clone();
    if !has_unsaved(&claimed.ops) {
        cfg.journal.remove(id);
        return Ok(format!("{key}: nothing to publish, the store has everything it held; removed"));
    }
    if claimed.record.released.is_empty() {
        // An interrupted upload cannot be finished safely; the file is sent again.
        abort_interrupted_upload(&*client, &mut claimed.record).await;
    }
    let writer = WriterHandle::spawn_recovered(client, cfg, claimed).map_err(|e| e.to_string())?;
    match writer.close().await {
        Ok(Some(up)) => Ok(format!("published {key} ({} bytes)", up.size)),
        Ok(None) => Ok(format!("{key}: nothing to publish")),
        Err(WriteError::Failed(e)) => Err(format!("{key} was not published: {e}")),
        Err(e) => Err(format!("{key} was not published: {e}")),
    }
}

/// Drops entry `id`; the line to print.
pub fn discard(journal: &Journal, id: &str) -> Result<String, String> {
    let claimed = journal.claim(id).map_err(|e| e.to_string())?.ok_or_else(in_use)?;
    let mut line = format!("discarded {}", claimed.record.key);
    if let Some(upload) = &claimed.record.upload_id {
        line.push_str(&format!(" (its unfinished upload {upload} is left to xosfs cleanup)"));
    }
    journal.remove(id);
    Ok(line)
}

fn in_use() -> String {
    "a running mount holds this file: unmount it first".into()
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
