//! The staging file: a sparse local copy of a file being written, with its journal entry
//! ([`super::journal`]): every write and truncate is logged before it is acknowledged, and
//! the record follows the file's state. I/O runs on tokio's blocking pool, never on the
//! runtime's worker threads.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::journal::{
    append, append_bytes, contents_line, disk_bytes, listing, record_lines, Entry, Journal, LogOp, LoggedParts, Record,
    State,
};
use super::space::StagingSpace;

pub struct StagingFile {
    journal: Arc<Journal>,
    id: String,
    file: Arc<File>,
    log: Arc<File>,
    /// The released parts the log lists.
    logged: Mutex<LoggedParts>,
    /// The entry's directory entries are durable.
    dir_durable: Arc<AtomicBool>,
    /// The last durable record logged the file's bytes, which the staging file may not
    /// hold on disk yet.
    contents_unsynced: AtomicBool,
    /// Set when the entry must outlive the handle (its data is not stored).
    keep: AtomicBool,
    space: Arc<StagingSpace>,
    /// Room taken from `space`, given back when the entry goes.
    charged: AtomicU64,
}

impl StagingFile {
    /// A new entry for `record`'s file, starting from `begin` (a [`LogOp::Begin`]); its
    /// record is written, not yet durable.
    pub fn create(
        journal: &Arc<Journal>,
        space: &Arc<StagingSpace>,
        record: &Record,
        begin: LogOp,
    ) -> std::io::Result<StagingFile> {
        let staging = StagingFile::new(journal, space, journal.new_entry()?, Some(Default::default()));
        let mut lines = begin.line().into_bytes();
        lines.extend(staging.record_lines(record)?);
        append_bytes(&staging.log, &lines)?;
        Ok(staging)
    }

    /// Entry `id` of a writer that died, its (locked) data file `data`, taken over to
    /// finish its upload; `record` is what its log says.
    pub fn adopt(
        journal: &Arc<Journal>,
        space: &Arc<StagingSpace>,
        id: String,
        data: File,
        record: &Record,
    ) -> std::io::Result<StagingFile> {
        let log = std::fs::OpenOptions::new().append(true).open(journal.path(&id, "log"))?;
        let entry = Entry { id, data, log, dir_durable: false };
        let staging = StagingFile::new(journal, space, entry, listing(&record.released));
        // What it holds counts against the limit like any staging file's bytes.
        let held = staging.file.metadata().map(|m| disk_bytes(&m)).unwrap_or(0);
        if staging.space.try_take(held) {
            staging.charged.store(held, Ordering::Release);
        }
        Ok(staging)
    }

    fn new(journal: &Arc<Journal>, space: &Arc<StagingSpace>, entry: Entry, logged: LoggedParts) -> StagingFile {
        StagingFile {
            journal: journal.clone(),
            id: entry.id,
            file: Arc::new(entry.data),
            log: Arc::new(entry.log),
            logged: Mutex::new(logged),
            dir_durable: Arc::new(AtomicBool::new(entry.dir_durable)),
            contents_unsynced: AtomicBool::new(false),
            keep: AtomicBool::new(false),
            space: space.clone(),
            charged: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` of room for data about to be staged; false when there is none.
    pub fn take_room(&self, bytes: u64) -> bool {
        let taken = self.space.try_take(bytes);
        if taken {
            self.charged.fetch_add(bytes, Ordering::AcqRel);
        }
        taken
    }

    /// Gives back room of bytes no longer staged (truncated away).
    pub fn give_room(&self, bytes: u64) {
        let given = self
            .charged
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(bytes)))
            .map_or(0, |before| before.min(bytes));
        self.space.give(given);
    }

    /// Frees the disk under `r` (its bytes are stored in the upload now) and gives the
    /// room back.
    pub async fn release(&self, r: Range<u64>) -> std::io::Result<()> {
        let file = self.file.clone();
        let (offset, len) = (r.start, r.end - r.start);
        blocking(move || {
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let rc = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            match rc {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        })
        .await?;
        self.give_room(len);
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        self.journal.path(&self.id, "data")
    }

    /// Writes `data` at `offset`: a change (`changed`), or bytes of the base held here.
    pub async fn write_at(&self, offset: u64, data: bytes::Bytes, changed: bool) -> std::io::Result<()> {
        let (file, log) = (self.file.clone(), self.log.clone());
        blocking(move || {
            file.write_all_at(&data, offset)?;
            let len = data.len() as u64;
            append(&log, if changed { LogOp::Write { offset, len } } else { LogOp::Held { offset, len } })
        })
        .await
    }

    /// Reads `len` bytes at `offset`; a hole or the end of the file reads as zeros.
    pub async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file = self.file.clone();
        blocking(move || read_or_zeros(&file, offset, len)).await
    }

    pub async fn set_len(&self, len: u64) -> std::io::Result<()> {
        let (file, log) = (self.file.clone(), self.log.clone());
        blocking(move || {
            file.set_len(len)?;
            append(&log, LogOp::Truncate { size: len })
        })
        .await
    }

    /// Logs a change that is not a write (an upload that stored everything, new
    /// attributes).
    pub async fn note(&self, op: LogOp) -> std::io::Result<()> {
        let log = self.log.clone();
        blocking(move || append(&log, op)).await
    }

    /// The log lines recording `record` (see [`record_lines`]).
    fn record_lines(&self, record: &Record) -> std::io::Result<Vec<u8>> {
        record_lines(&mut self.logged.lock().unwrap_or_else(|e| e.into_inner()), record)
    }

    /// Records `record` in the log; `durable` waits until the data, then the log and
    /// (once) the directory are on disk: what a reboot finds is what the record says.
    pub async fn save(&self, record: Record, durable: bool) -> std::io::Result<()> {
        self.append_record(record, if durable { Sync::DataThenLog } else { Sync::None }).await
    }

    /// Records `record` durably with the file's `size` bytes in the log beside it (see
    /// [`contents_line`]): one sync, of the log, where [`StagingFile::save`] needs two.
    pub async fn save_with_contents(&self, record: Record, size: u64) -> std::io::Result<()> {
        self.append_record(record, Sync::LogWithContents { size }).await
    }

    /// Records `record` durably, without syncing the data: a release of stored parts
    /// relies only on the log (which lists them; the upload holds those parts) being on
    /// disk before their holes are. Syncing the staged bytes too wrote the whole stream
    /// to the disk inside its writes, a third of a streamed write's time; bytes of a file
    /// still open have no promise across a reboot until a write-back close commits them.
    pub async fn save_record_only(&self, record: Record) -> std::io::Result<()> {
        self.append_record(record, Sync::Log).await
    }

    /// Appends `record` to the log and waits for what `sync` names to be on disk (with
    /// the log, the directory once).
    async fn append_record(&self, record: Record, sync: Sync) -> std::io::Result<()> {
        let record_lines = self.record_lines(&record)?;
        let (file, log, dir_durable) = (self.file.clone(), self.log.clone(), self.dir_durable.clone());
        let dir = self.journal.dir().to_path_buf();
        // Bytes an earlier record logged are not synced in the staging file: a record
        // that relies on them there (a closed or failed file's) syncs them first.
        let relies_on_data = matches!(record.state, State::Closed | State::Failed);
        let sync_data = match sync {
            Sync::DataThenLog => true,
            Sync::LogWithContents { .. } => false,
            Sync::None | Sync::Log => relies_on_data && self.contents_unsynced.load(Ordering::Acquire),
        };
        let appended = blocking(move || {
            if sync_data {
                file.sync_data()?;
            }
            let lines = match sync {
                Sync::LogWithContents { size } => {
                    let mut lines = contents_line(&read_or_zeros(&file, 0, size as usize)?);
                    lines.extend(record_lines);
                    lines
                }
                _ => record_lines,
            };
            append_bytes(&log, &lines)?;
            if sync == Sync::None {
                return Ok(());
            }
            log.sync_data()?;
            if !dir_durable.load(Ordering::Acquire) {
                File::open(&dir)?.sync_all()?;
                dir_durable.store(true, Ordering::Release);
            }
            Ok(())
        })
        .await;
        match (&appended, sync) {
            (Err(_), _) => {
                // What the log lists is unknown now: the next record lists every part again.
                *self.logged.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            (Ok(()), Sync::LogWithContents { .. }) => self.contents_unsynced.store(true, Ordering::Release),
            (Ok(()), _) if sync_data => self.contents_unsynced.store(false, Ordering::Release),
            _ => {}
        }
        appended
    }

    /// Keeps the entry after the handle is gone (its data is not stored).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Release);
    }
}

/// What a record's save waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    None,
    Log,
    /// The log, with the file's first `size` bytes logged before the record.
    LogWithContents {
        size: u64,
    },
    /// The data before the record is appended: the record must not reach the disk before
    /// the bytes it speaks for (the page cache may write the log back at any moment), or a
    /// reboot could find a closed file whose bytes are not there.
    DataThenLog,
}

/// Bytes staged on disk above which emptying the entry is left to the blocking pool.
const LARGE_ENTRY: u64 = 1 << 20;

impl Drop for StagingFile {
    fn drop(&mut self) {
        let held = self.charged.load(Ordering::Acquire);
        self.space.give(held);
        if self.keep.load(Ordering::Acquire) {
            return;
        }
        // The files go on as a spare, through descriptors of their own (sharing the
        // lock), unless a task still uses them.
        let unshared = Arc::strong_count(&self.file) == 1 && Arc::strong_count(&self.log) == 1;
        let files = unshared.then(|| self.file.try_clone().and_then(|data| Ok((data, self.log.try_clone()?))));
        let id = std::mem::take(&mut self.id);
        let entry = match files {
            Some(Ok((data, log))) => Ok(Entry { id, data, log, dir_durable: self.dir_durable.load(Ordering::Acquire) }),
            _ => Err(id),
        };
        let end = EntryEnd { journal: self.journal.clone(), entry: Some(entry) };
        // Freeing a large file's blocks is disk work for the blocking pool, not a runtime
        // worker; a small file's take less than the trip there (a thread woken for every
        // small file cost a tenth of their rate). Done here when the daemon is ending.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if held > LARGE_ENTRY && !self.journal.is_closing() => {
                drop(runtime.spawn_blocking(move || drop(end)))
            }
            _ => drop(end),
        }
    }
}

/// The end of a dropped staging file's entry: finished (kept as a spare) or removed, when
/// this is dropped. That is in the blocking pool's task, or, when the runtime is shutting
/// down (its pool then drops what it is sent unrun: a writer task dropped by the shutdown
/// of `xosfs recover`'s runtime), as that task is dropped. Either way the entry does not
/// outlive its file, to be listed as unsaved data and published again.
struct EntryEnd {
    journal: Arc<Journal>,
    entry: Option<Result<Entry, String>>,
}

impl Drop for EntryEnd {
    fn drop(&mut self) {
        match self.entry.take() {
            Some(Ok(entry)) => self.journal.finish(entry),
            Some(Err(id)) => self.journal.remove(&id),
            None => {}
        }
    }
}

/// `len` bytes of `file` at `offset`, a hole or the end of the file read as zeros.
/// Straight into the buffer's spare room: zeroing a part's worth of memory first was a
/// twentieth of a streamed write's CPU.
fn read_or_zeros(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let at = (offset + done as u64) as libc::off_t;
        let spare = &mut buf.spare_capacity_mut()[..len - done];
        // SAFETY: pread writes at most `spare.len()` bytes into memory the vector owns,
        // and the vector's length then covers only the `n` bytes written.
        let n = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            0 => break,
            n if n > 0 => unsafe { buf.set_len(done + n as usize) },
            _ => match std::io::Error::last_os_error() {
                e if e.kind() == std::io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    buf.resize(len, 0);
    Ok(buf)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::super::journal::{State, StoreId};
    use super::*;

    fn record(key: &str) -> Record {
        Record {
            store: StoreId::default(),
            key: key.into(),
            state: State::Open,
            expect: Default::default(),
            base_etag: None,
            base_size: None,
            opts: Default::default(),
            mtime: None,
            upload_id: None,
            released: Vec::new(),
            error: None,
            updated: 0,
        }
    }

    #[test]
    fn holes_read_as_zeros_changes_are_logged_and_drop_ends_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path(), StoreId::default()));
        let space = Arc::new(StagingSpace::new(Some(1 << 20)));
        let f = StagingFile::create(&journal, &space, &record("a/b/movie.mp4"), LogOp::Stored).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Dropped outside a runtime, the entry ends at once (a large one dropped inside
        // one ends on its blocking pool, a moment later).
        let (f, id) = runtime.block_on(async {
            assert!(f.path().file_name().unwrap().to_str().unwrap().ends_with(".data"));
            f.write_at(10, bytes::Bytes::from_static(b"abc"), true).await.unwrap();
            assert_eq!(f.read_at(8, 8).await.unwrap(), b"\0\0abc\0\0\0");
            f.set_len(11).await.unwrap();
            assert_eq!(f.read_at(8, 8).await.unwrap(), b"\0\0a\0\0\0\0\0");
            let id = f.id.clone();
            let log = std::fs::read_to_string(journal.path(&id, "log")).unwrap();
            let lines: Vec<&str> = log.lines().map(|l| l.split_once(" {").map_or(l, |(kind, _)| kind)).collect();
            assert_eq!(lines, ["s", "r", "w 10 3", "t 11"], "{log}");
            assert!(f.take_room(1000));
            assert_eq!(space.used(), 1000);
            f.release(0..8192).await.unwrap();
            assert_eq!(space.used(), 0, "released room is given back");
            assert!(f.take_room(500));
            (f, id)
        });
        drop(f);
        assert_eq!(space.used(), 0, "a dropped entry gives back what it held");
        assert!(journal.list().unwrap().is_empty(), "no entry is left");
        let spare = journal.new_entry().unwrap();
        assert_eq!(spare.id, id, "its files are a spare");
        assert_eq!(spare.log.metadata().unwrap().len() + spare.data.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_large_entry_dropped_as_its_runtime_shuts_down_still_ends() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path(), StoreId::default()));
        let f = StagingFile::create(&journal, &Arc::default(), &record("big"), LogOp::Stored).unwrap();
        assert!(f.take_room(2 * LARGE_ENTRY));
        // A task holding the file is dropped by the runtime's shutdown, whose blocking pool
        // no longer runs what is sent to it then.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        runtime.spawn(async move {
            let _held = f;
            std::future::pending::<()>().await
        });
        drop(runtime);
        assert!(journal.list().unwrap().is_empty(), "the entry outlived its staging file");
    }

    #[tokio::test]
    async fn bytes_saved_with_the_record_come_back_to_a_staging_file_that_lost_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path(), StoreId::default()));
        let begin = LogOp::Begin { size: 0, base_limit: 0, must_upload: true };
        let f = StagingFile::create(&journal, &Arc::default(), &record("k"), begin).unwrap();
        f.write_at(0, bytes::Bytes::from_static(b"small file"), true).await.unwrap();
        f.save_with_contents(Record { state: State::Closed, ..record("k") }, 12).await.unwrap();
        f.keep();
        let id = f.id.clone();
        drop(f);
        // A reboot before the page cache wrote the staging file back.
        File::options().write(true).open(journal.path(&id, "data")).unwrap().set_len(0).unwrap();
        let claimed = journal.claim(&id).unwrap().unwrap();
        assert_eq!(claimed.record.state, State::Closed);
        assert_eq!(
            std::fs::read(journal.path(&id, "data")).unwrap(),
            b"small file\0\0",
            "a size past the end reads as zeros"
        );
    }

    #[tokio::test]
    async fn a_kept_entry_survives_and_can_be_claimed_once_its_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::new(dir.path(), StoreId::default()));
        let f = StagingFile::create(&journal, &Arc::default(), &record("k"), LogOp::Stored).unwrap();
        f.write_at(0, bytes::Bytes::from_static(b"data"), true).await.unwrap();
        f.save(Record { state: State::Closed, ..record("k") }, true).await.unwrap();
        f.keep();
        let id = f.id.clone();
        drop(f);
        let claimed = journal.claim(&id).unwrap().unwrap();
        assert_eq!(
            (claimed.record.state, claimed.ops.as_slice()),
            (State::Closed, &[LogOp::Stored, LogOp::Write { offset: 0, len: 4 }][..])
        );
    }
}
