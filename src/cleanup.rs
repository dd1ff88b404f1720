//! `xosfs cleanup`: abort the unfinished multipart uploads that killed or crashed clients
//! left behind. Their parts are stored, and paid for, until the upload is aborted.

use std::io::{IsTerminal, Write};
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};

use crate::store::{ErrorKind, ObjectError, ObjectStore, UnfinishedUpload};

/// The most uploads one ListMultipartUploads answers with (S3's and XOS's limit).
pub const MAX_UPLOADS_PER_PAGE: i32 = 1000;

/// Aborts in flight at once: enough to hide round trips, few enough not to look like a flood.
const PARALLEL_ABORTS: usize = 8;

/// What a run found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Unfinished uploads listed.
    pub found: usize,
    /// Of those, started before the cutoff.
    pub stale: usize,
    /// Stale uploads aborted (none in a dry run).
    pub aborted: usize,
    /// Stale uploads whose abort failed.
    pub failed: usize,
}

impl Summary {
    /// The one line a user reads at the end; `age` is --older-than as given.
    pub fn line(&self, age: &str, dry_run: bool) -> String {
        let kept = self.found - self.stale;
        let failed = match self.failed {
            0 => String::new(),
            n => format!(", {n} could not be aborted"),
        };
        let verb = if dry_run { "would abort" } else { "aborted" };
        let done = if dry_run { self.stale } else { self.aborted };
        format!("{verb} {done} of {} unfinished uploads ({kept} younger than {age} kept{failed})", self.found)
    }
}

/// What the caller is told while a run goes on.
pub trait Progress {
    /// An upload started before the cutoff (aborted next, unless this is a dry run).
    fn stale(&mut self, upload: &UnfinishedUpload);
    fn abort_failed(&mut self, upload: &UnfinishedUpload, error: &ObjectError);
    /// After each page: the counts so far.
    fn advanced(&mut self, summary: &Summary);
}

/// Lists every unfinished upload under `prefix`, `page_size` a request, and aborts those
/// initiated before `cutoff` (only counts them when `dry_run`). A listing error ends the
/// run; a failed abort is counted and the run goes on.
pub async fn run(
    client: &dyn ObjectStore,
    prefix: &str,
    cutoff: SystemTime,
    dry_run: bool,
    page_size: i32,
    progress: &mut dyn Progress,
) -> Result<Summary, ObjectError> {
    let mut summary = Summary::default();
    let mut after = None;
    loop {
        let page = client.list_multipart_uploads(prefix, after, page_size).await?;
        summary.found += page.uploads.len();
        // An upload of unknown age may be one that is running: keep it.
        let stale: Vec<UnfinishedUpload> =
            page.uploads.into_iter().filter(|u| u.initiated.is_some_and(|t| t < cutoff)).collect();
        summary.stale += stale.len();
        for upload in &stale {
            progress.stale(upload);
        }
        if !dry_run {
            // The markers are positions in key order, so aborting what was listed does not
            // shift the next page.
            let mut results = stream::iter(stale)
                .map(|u| async move {
                    let result = client.abort_multipart_upload(&u.key, &u.upload_id).await;
                    (u, result)
                })
                .buffer_unordered(PARALLEL_ABORTS);
            while let Some((upload, result)) = results.next().await {
                match result {
                    // NoSuchUpload: completed or aborted by someone else meanwhile; gone either way.
                    Ok(()) => summary.aborted += 1,
                    Err(e) if e.is(ErrorKind::NotFound) => summary.aborted += 1,
                    Err(e) => {
                        summary.failed += 1;
                        progress.abort_failed(&upload, &e);
                    }
                }
            }
        }
        progress.advanced(&summary);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(summary),
        }
    }
}

/// Reports to the user: a dry run lists the stale uploads on stdout, failed aborts go to
/// stderr, and on a terminal a progress line is kept up to date on stderr.
pub struct Console {
    dry_run: bool,
    tty: bool,
}

impl Console {
    pub fn new(dry_run: bool) -> Console {
        Console { dry_run, tty: std::io::stderr().is_terminal() }
    }

    /// Clears the progress line before the summary is printed.
    pub fn finish(&mut self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

impl Progress for Console {
    fn stale(&mut self, upload: &UnfinishedUpload) {
        if self.dry_run {
            let initiated = upload
                .initiated
                .and_then(|t| {
                    aws_smithy_types::DateTime::from(t).fmt(aws_smithy_types::date_time::Format::DateTime).ok()
                })
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{initiated}  {}  {}", upload.upload_id, upload.key);
        }
    }

    fn abort_failed(&mut self, upload: &UnfinishedUpload, error: &ObjectError) {
        self.finish();
        eprintln!("xosfs: cannot abort upload {} of '{}': {error}", upload.upload_id, upload.key);
    }

    fn advanced(&mut self, summary: &Summary) {
        if self.tty {
            let verb = if self.dry_run { "to abort" } else { "aborted" };
            let done = if self.dry_run { summary.stale } else { summary.aborted };
            eprint!("\r\x1b[Klisted {} unfinished uploads, {done} {verb}", summary.found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_says_what_was_done_and_kept() {
        let s = Summary { found: 5, stale: 3, aborted: 3, failed: 0 };
        assert_eq!(s.line("24h", false), "aborted 3 of 5 unfinished uploads (2 younger than 24h kept)");
        assert_eq!(s.line("7d", true), "would abort 3 of 5 unfinished uploads (2 younger than 7d kept)");
        let s = Summary { found: 5, stale: 3, aborted: 2, failed: 1 };
        assert_eq!(
            s.line("24h", false),
            "aborted 2 of 5 unfinished uploads (2 younger than 24h kept, 1 could not be aborted)"
        );
    }
}
