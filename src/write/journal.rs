//! The journal: a record in the cache directory of every file being written, so that no
//! written byte is lost when the daemon dies (kill -9, the OOM killer, a reboot).
//!
//! Each file being written is an entry of three files in `<cache dir>/writes/`:
//! - `ID.data`: the staging file, the bytes written; its writer holds an exclusive `flock`
//!   on it for as long as it lives, so an entry whose lock can be taken has lost its writer;
//! - `ID.log`: the extent log, one line per change of the data (`w OFFSET LEN`,
//!   `t SIZE`), appended before the change is acknowledged; `s` marks an upload that stored
//!   everything before it, `m` a change of attributes. Replayed, it tells which bytes the
//!   staging file holds and which are not stored yet;
//! - `ID.json`: the [`Record`]: the store and key, the version the upload may replace,
//!   the metadata, the upload in progress and the entry's [`State`]. It is replaced
//!   atomically (written aside, renamed over).
//!
//! Against a crash of the daemon, writes to the page cache suffice. Against a reboot,
//! an entry is fsynced (data, log, record, directory) before the state it records is
//! relied on: when a write-back close returns. Parts of a stream given back from the
//! staging file need only the record (which lists them) durable before their holes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::store::{Precondition, PutOptions};

/// Where the entries live, below the cache directory.
pub const WRITES_DIR: &str = "writes";

/// Space kept aside for records when the disk fills up.
const RESERVE: u64 = 1 << 20;
const RESERVE_FILE: &str = "reserve";

/// What became of a file being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Open: its data may be incomplete, so it is never stored over the object unless
    /// `xosfs recover --publish` says so.
    Open,
    /// Closed, and its writer was told so: the next mount of the store uploads it.
    Closed,
    /// Its upload failed and its writer was told: kept for `xosfs recover`, and removed
    /// after --keep-failed.
    Failed,
    /// Unlinked while open: nothing is to be stored.
    Unlinked,
}

/// The store an entry belongs to: a mount uploads only its own store's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreId {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
}

/// One entry's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub store: StoreId,
    pub key: String,
    pub state: State,
    /// The version the upload may replace.
    pub expect: Precondition,
    /// The stored object the bytes not in the staging file come from.
    pub base_etag: Option<String>,
    pub base_size: Option<u64>,
    pub opts: PutOptions,
    /// An mtime set explicitly (utimens) since the data last changed, as s3fs stores it.
    pub mtime: Option<String>,
    /// The multipart upload in progress, to abort (or finish) after a crash.
    pub upload_id: Option<String>,
    /// Parts of that upload whose bytes left the staging file: the upload holds the only
    /// copy, so it is finished, never aborted, while the entry is kept.
    #[serde(default)]
    pub released: Vec<crate::store::CompletedPart>,
    /// Why the upload failed, for `xosfs recover --list`.
    pub error: Option<String>,
    /// Seconds since the epoch of the last change of state.
    pub updated: u64,
}

/// One line of the extent log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOp {
    /// The state the entry starts from (at creation, or after a server-side copy made
    /// the file anew).
    Begin {
        size: u64,
        base_limit: u64,
        must_upload: bool,
    },
    Write {
        offset: u64,
        len: u64,
    },
    /// Bytes of the base copied into the staging file: held, not changed.
    Held {
        offset: u64,
        len: u64,
    },
    Truncate {
        size: u64,
    },
    /// An upload stored everything before this line.
    Stored,
    /// Attributes changed: the file must be uploaded even with no data changed.
    Meta,
}

impl LogOp {
    fn line(self) -> String {
        match self {
            LogOp::Begin { size, base_limit, must_upload } => {
                format!("b {size} {base_limit} {}\n", u8::from(must_upload))
            }
            LogOp::Write { offset, len } => format!("w {offset} {len}\n"),
            LogOp::Held { offset, len } => format!("h {offset} {len}\n"),
            LogOp::Truncate { size } => format!("t {size}\n"),
            LogOp::Stored => "s\n".into(),
            LogOp::Meta => "m\n".into(),
        }
    }

    fn parse(line: &str) -> Option<LogOp> {
        let mut words = line.split(' ');
        let op = match (words.next()?, words.next(), words.next(), words.next()) {
            ("b", Some(s), Some(l), Some(m)) => {
                LogOp::Begin { size: s.parse().ok()?, base_limit: l.parse().ok()?, must_upload: m == "1" }
            }
            ("w", Some(o), Some(l), None) => LogOp::Write { offset: o.parse().ok()?, len: l.parse().ok()? },
            ("h", Some(o), Some(l), None) => LogOp::Held { offset: o.parse().ok()?, len: l.parse().ok()? },
            ("t", Some(s), None, None) => LogOp::Truncate { size: s.parse().ok()? },
            ("s", None, None, None) => LogOp::Stored,
            ("m", None, None, None) => LogOp::Meta,
            _ => return None,
        };
        words.next().is_none().then_some(op)
    }
}

/// Whether the log holds changes no upload stored.
pub fn has_unsaved(ops: &[LogOp]) -> bool {
    ops.iter().fold(false, |unsaved, op| match op {
        LogOp::Stored => false,
        LogOp::Begin { must_upload, .. } => *must_upload,
        LogOp::Held { .. } => unsaved,
        LogOp::Write { .. } | LogOp::Truncate { .. } | LogOp::Meta => true,
    })
}

/// The journal of one cache directory.
pub struct Journal {
    dir: PathBuf,
    store: StoreId,
}

/// An entry found in the journal.
#[derive(Debug)]
pub struct Found {
    pub id: String,
    pub record: Record,
    /// Its writer is alive (a running mount holds it).
    pub live: bool,
    /// Bytes the staging file holds on disk.
    pub staged: u64,
}

/// An entry whose writer is gone, now held (locked) by the caller.
pub struct Claimed {
    pub id: String,
    pub record: Record,
    pub data: File,
    pub ops: Vec<LogOp>,
}

impl Journal {
    pub fn new(cache_dir: &Path, store: StoreId) -> Journal {
        Journal { dir: cache_dir.join(WRITES_DIR), store }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &StoreId {
        &self.store
    }

    /// The path of entry `id`'s file with `ext` (`data`, `log`, `json`).
    pub fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Every entry, oldest first; unreadable records are skipped with a warning.
    pub fn list(&self) -> std::io::Result<Vec<Found>> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else { continue };
            let record = match read_record(&entry.path()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(entry = %entry.path().display(), "unreadable journal record: {e}");
                    continue;
                }
            };
            let data = self.path(id, "data");
            let live = match File::open(&data) {
                Ok(f) => !try_lock(&f),
                Err(_) => false,
            };
            let staged = std::fs::metadata(&data).map(|m| disk_bytes(&m)).unwrap_or(0);
            found.push(Found { id: id.to_string(), record, live, staged });
        }
        found.sort_by(|a, b| (a.record.updated, &a.id).cmp(&(b.record.updated, &b.id)));
        Ok(found)
    }

    /// Takes entry `id` if its writer is gone: `None` while a writer holds it.
    pub fn claim(&self, id: &str) -> std::io::Result<Option<Claimed>> {
        let data = std::fs::OpenOptions::new().read(true).write(true).open(self.path(id, "data"))?;
        if !try_lock(&data) {
            return Ok(None);
        }
        let record = read_record(&self.path(id, "json"))?;
        let log = std::fs::read_to_string(self.path(id, "log")).unwrap_or_default();
        // A line cut short by a crash is the last one, and ends the log.
        let ops = log.lines().map_while(LogOp::parse).collect();
        Ok(Some(Claimed { id: id.to_string(), record, data, ops }))
    }

    /// Makes sure the reserve is there: a file of [`RESERVE`] bytes whose space a full
    /// disk gives back to let a record be written (the record must precede the release
    /// that frees space).
    pub fn keep_reserve(&self) {
        let path = self.dir.join(RESERVE_FILE);
        if path.exists() {
            return;
        }
        let made = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).and_then(|f| {
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            match unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, RESERVE as libc::off_t) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Gives the reserve's space back to the disk; false when there was none.
    pub fn spend_reserve(&self) -> bool {
        std::fs::remove_file(self.dir.join(RESERVE_FILE)).is_ok()
    }

    /// Removes entry `id`'s files.
    pub fn remove(&self, id: &str) {
        for ext in ["json", "log", "data"] {
            let _ = std::fs::remove_file(self.path(id, ext));
        }
    }
}

/// A new entry's files: the data file (locked), the log, no record yet.
pub fn create_entry(journal: &Journal, key: &str) -> std::io::Result<(String, File, File)> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&journal.dir)?;
    let base: String = key
        .rsplit('/')
        .next()
        .unwrap_or("file")
        .chars()
        .map(|c| if c.is_alphanumeric() || ".-_".contains(c) { c } else { '_' })
        .take(60)
        .collect();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let open = |path: &Path| std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path);
    loop {
        let id = format!("{}-{}-{:08x}-{base}", now.as_secs(), std::process::id(), rand::random::<u32>());
        let data = match open(&journal.path(&id, "data")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        if !try_lock(&data) {
            return Err(std::io::Error::other("cannot lock a new staging file"));
        }
        journal.keep_reserve();
        let log = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(journal.path(&id, "log"))?;
        return Ok((id, data, log));
    }
}

/// Appends one line to an extent log.
pub fn append(log: &File, op: LogOp) -> std::io::Result<()> {
    (&*log).write_all(op.line().as_bytes())
}

/// Replaces the record at `path` atomically; `durable` waits until it is on disk.
pub fn save_record(path: &Path, record: &Record, durable: bool) -> std::io::Result<()> {
    save_record_with(path, record, if durable { Some(&[]) } else { None })
}

/// Replaces the record at `path` atomically. With `durable`, the record and those files
/// are made durable first (their syncs run at once, so the filesystem can commit them
/// together), then the rename: what a reboot finds is what the record says.
pub fn save_record_with(path: &Path, record: &Record, durable: Option<&[&File]>) -> std::io::Result<()> {
    let aside = path.with_extension("json.new");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&aside)?;
    file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
    let Some(first) = durable else {
        return std::fs::rename(&aside, path);
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = first.iter().map(|f| scope.spawn(move || f.sync_data())).collect();
        let own = file.sync_all();
        others
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(std::io::Error::other("sync panicked"))))
            .chain([own])
            .collect::<std::io::Result<Vec<()>>>()
    })?;
    std::fs::rename(&aside, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

fn read_record(path: &Path) -> std::io::Result<Record> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
}

/// Takes the exclusive lock on `file` without waiting; false while another holds it.
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The disk space a (sparse) file takes.
pub(super) fn disk_bytes(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

/// Seconds since the epoch, as records store time.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// How long ago a record's `updated` was.
pub fn age(updated: u64) -> Duration {
    Duration::from_secs(now_secs().saturating_sub(updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_round_trip_and_a_torn_line_ends_the_log() {
        let ops = [
            LogOp::Begin { size: 9, base_limit: 4, must_upload: true },
            LogOp::Write { offset: 5, len: 10 },
            LogOp::Held { offset: 0, len: 5 },
            LogOp::Truncate { size: 3 },
            LogOp::Stored,
            LogOp::Meta,
        ];
        let mut text: String = ops.iter().map(|op| op.line()).collect();
        text.push_str("w 7");
        let parsed: Vec<LogOp> = text.lines().map_while(LogOp::parse).collect();
        assert_eq!(parsed, ops);
    }

    #[test]
    fn an_entry_is_live_while_its_data_file_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), StoreId::default());
        let (id, data, _log) = create_entry(&journal, "a/b/c.txt").unwrap();
        let record = Record {
            store: StoreId::default(),
            key: "a/b/c.txt".into(),
            state: State::Closed,
            expect: Precondition::Absent,
            base_etag: None,
            base_size: None,
            opts: PutOptions::default(),
            mtime: None,
            upload_id: None,
            released: Vec::new(),
            error: None,
            updated: now_secs(),
        };
        save_record(&journal.path(&id, "json"), &record, true).unwrap();
        let found = journal.list().unwrap();
        assert_eq!((found.len(), found[0].live, found[0].record.key.as_str()), (1, true, "a/b/c.txt"));
        assert!(journal.claim(&id).unwrap().is_none(), "a live entry is not taken");
        drop(data);
        let claimed = journal.claim(&id).unwrap().expect("the writer is gone");
        assert_eq!(claimed.record.state, State::Closed);
        assert!(journal.list().unwrap()[0].live, "held by its claimer");
        journal.remove(&id);
        assert!(journal.list().unwrap().is_empty());
    }
}
