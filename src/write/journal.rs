//! The journal: a record in the cache directory of every file being written, so that no
//! written byte is lost when the daemon dies (kill -9, the OOM killer, a reboot).
//!
//! Each file being written is an entry of two files in `<cache dir>/writes/`:
//! - `ID.data`: the staging file, the bytes written; its writer holds an exclusive `flock`
//!   on it for as long as it lives, so an entry whose lock can be taken has lost its writer;
//! - `ID.log`: one line per change, appended before the change is relied on. Changes of
//!   the data (`w OFFSET LEN`, `t SIZE`, ...) are appended before they are acknowledged;
//!   `s` marks an upload that stored everything before it, `m` a change of attributes.
//!   Replayed, they tell which bytes the staging file holds and which are not stored yet.
//!   `r JSON` is the [`Record`] as of that line (the store and key, the version the
//!   upload may replace, the metadata, the upload in progress, the entry's [`State`]); the
//!   last whole one is the entry's. `p NUMBER ETAG` lists a part of the upload whose bytes
//!   left the staging file, `P` forgets those listed before (a new upload): the record
//!   does not repeat them, so a long stream's log grows by a line per part. `d BASE64`
//!   holds a small file's bytes, whole, as of the record on the next line.
//!
//! A log with no record is no entry (yet): one being made, or a spare. Entries are made
//! from spares when there are some: a finished entry's files are emptied and kept (still
//! locked) for the next, because making and deleting files is what a stream of small files
//! costs most here (an ext4 without a journal scans past every recently deleted inode to
//! allocate one). A daemon's spares are removed when it ends, or by a later one once
//! unlocked and a minute old.
//!
//! Against a crash of the daemon, writes to the page cache suffice. Against a reboot,
//! an entry is fsynced before the state it records is relied on (when a write-back close
//! returns): its data, and only then is the record appended and the log (and, once, the
//! directory) synced, so a closed file's record never reaches the disk before its bytes. A
//! small file's bytes go in the log with its record instead, and one sync of the log does;
//! a later record that relies on them (closed or failed) syncs the staging file first.
//! Parts of a stream given back from the staging file need only the log (which lists
//! them) durable before their holes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::store::{CompletedPart, Precondition, PutOptions};

/// Where the entries live, below the cache directory.
pub const WRITES_DIR: &str = "writes";

/// Space kept aside for records when the disk fills up.
const RESERVE: u64 = 1 << 20;
const RESERVE_FILE: &str = "reserve";

/// Emptied entries kept for new ones, at most.
const MAX_SPARES: usize = 64;

/// How old a dead daemon's spare is before another removes it (younger, it may be an
/// entry being made).
const SPARE_GRACE: Duration = Duration::from_secs(60);

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
    /// copy, so it is finished, never aborted, while the entry is kept. Logged as lines
    /// of their own (read from a record of the earlier format).
    #[serde(default, skip_serializing)]
    pub released: Vec<CompletedPart>,
    /// Why the upload failed, for `xosfs recover --list`.
    pub error: Option<String>,
    /// Seconds since the epoch of the last change of state.
    pub updated: u64,
}

/// One line of the log that changes the data.
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
    pub fn line(self) -> String {
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

/// What a log says, replayed: the record as of its last record line (none before the
/// first), and the changes of the data. A line cut short by a crash (no newline, or not
/// whole) is the last one, and ends the log.
struct Replayed {
    record: Option<Record>,
    ops: Vec<LogOp>,
    /// The file's bytes, whole, logged with the record (see [`contents_line`]).
    contents: Option<Vec<u8>>,
}

fn replay(text: &str) -> Replayed {
    let mut replayed = Replayed { record: None, ops: Vec::new(), contents: None };
    let mut released = BTreeMap::new();
    let mut contents = None;
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else { break };
        if let Some(json) = line.strip_prefix("r ") {
            let Ok(mut record) = serde_json::from_str::<Record>(json) else { break };
            record.released = released.values().cloned().collect();
            replayed.record = Some(record);
            replayed.contents = contents.take();
        } else if let Some(encoded) = line.strip_prefix("d ") {
            let Ok(bytes) = BASE64.decode(encoded) else { break };
            contents = Some(bytes);
        } else if let Some(part) = line.strip_prefix("p ") {
            let Some((number, etag)) = part.split_once(' ') else { break };
            let Ok(number) = number.parse() else { break };
            released.insert(number, CompletedPart { number, etag: etag.to_string() });
        } else if line == "P" {
            released.clear();
        } else {
            let Some(op) = LogOp::parse(line) else { break };
            replayed.ops.push(op);
        }
    }
    replayed
}

/// The line that logs a file's bytes, whole, with the record that follows it: a small
/// file's write-back close is then durable with one sync, of the log, instead of two (the
/// staging file's, then the log's). Claiming the entry writes them back to its staging
/// file.
pub fn contents_line(bytes: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(bytes.len() * 4 / 3 + 8);
    line.extend_from_slice(b"d ");
    line.extend_from_slice(BASE64.encode(bytes).as_bytes());
    line.push(b'\n');
    line
}

/// What an entry's log lists of the released parts: number to ETag, `None` when unknown
/// (after a failed append).
pub type LoggedParts = Option<BTreeMap<i32, String>>;

/// What a log lists once it lists `parts`.
pub fn listing(parts: &[CompletedPart]) -> LoggedParts {
    Some(parts.iter().map(|p| (p.number, p.etag.clone())).collect())
}

/// The log lines that record `record`: first those bringing the log's list of released
/// parts from `logged` to the record's, then the record. `logged` becomes the record's
/// list.
pub fn record_lines(logged: &mut LoggedParts, record: &Record) -> std::io::Result<Vec<u8>> {
    let wanted: BTreeMap<i32, &str> = record.released.iter().map(|p| (p.number, p.etag.as_str())).collect();
    let kept = logged.as_ref().is_some_and(|l| l.iter().all(|(n, etag)| wanted.get(n) == Some(&etag.as_str())));
    let mut text = String::new();
    if !kept {
        text.push_str("P\n");
        *logged = Some(BTreeMap::new());
    }
    let listed = logged.get_or_insert_default();
    for (&number, &etag) in &wanted {
        if let std::collections::btree_map::Entry::Vacant(slot) = listed.entry(number) {
            text.push_str(&format!("p {number} {etag}\n"));
            slot.insert(etag.to_string());
        }
    }
    text.push_str("r ");
    let mut bytes = text.into_bytes();
    serde_json::to_writer(&mut bytes, record).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The journal of one cache directory.
pub struct Journal {
    dir: PathBuf,
    store: StoreId,
    /// This daemon's emptied entries, locked, for new ones.
    spares: Mutex<Vec<Entry>>,
    /// The daemon is ending: entries that finish now are removed, not kept as spares.
    closing: AtomicBool,
}

/// An entry's open files: the data file (locked by its holder) and the log (appending).
pub struct Entry {
    pub id: String,
    pub data: File,
    pub log: File,
    /// Its directory entries are durable (a durable save synced the directory).
    pub dir_durable: bool,
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
        Journal {
            dir: cache_dir.join(WRITES_DIR),
            store,
            spares: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &StoreId {
        &self.store
    }

    /// The path of entry `id`'s file with `ext` (`data`, `log`).
    pub fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Every entry, oldest first. Records of the earlier format (`ID.json`) are moved
    /// into their logs first; unlocked spares older than [`SPARE_GRACE`] are removed.
    pub fn list(&self) -> std::io::Result<Vec<Found>> {
        let mut found = Vec::new();
        let names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for id in names.iter().filter_map(|n| n.strip_suffix(".json")) {
            if let Err(e) = self.migrate(id) {
                tracing::warn!(entry = %self.path(id, "json").display(), "unreadable journal record: {e}");
            }
        }
        let ids: std::collections::BTreeSet<&str> =
            names.iter().filter_map(|n| n.strip_suffix(".log").or_else(|| n.strip_suffix(".data"))).collect();
        for id in ids {
            let data = File::open(self.path(id, "data"));
            let live = matches!(&data, Ok(f) if !try_lock(f));
            let Some(record) = self.read_log(id).record else {
                if !live && self.untouched_for(id, SPARE_GRACE) {
                    self.remove(id);
                }
                continue;
            };
            let staged = data.and_then(|f| f.metadata()).map(|m| disk_bytes(&m)).unwrap_or(0);
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
        let Replayed { record, ops, contents } = self.read_log(id);
        let record = record.ok_or_else(|| std::io::Error::other("the entry has no record"))?;
        if let Some(bytes) = contents {
            // The staging file may have lost them (a reboot before the page cache was
            // written back): the log holds them, durably.
            use std::os::unix::fs::FileExt;
            data.set_len(0)?;
            data.write_all_at(&bytes, 0)?;
            data.sync_data()?;
        }
        Ok(Some(Claimed { id: id.to_string(), record, data, ops }))
    }

    /// Whether neither of entry `id`'s files changed for `time`.
    fn untouched_for(&self, id: &str, time: Duration) -> bool {
        ["log", "data"].iter().all(|ext| match std::fs::metadata(self.path(id, ext)).and_then(|m| m.modified()) {
            Ok(modified) => modified.elapsed().unwrap_or_default() > time,
            Err(_) => true,
        })
    }

    fn read_log(&self, id: &str) -> Replayed {
        replay(&String::from_utf8_lossy(&std::fs::read(self.path(id, "log")).unwrap_or_default()))
    }

    /// Appends `record` to a claimed entry's log (its released parts are listed there
    /// already).
    pub fn save_claimed(&self, claimed: &Claimed) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new().append(true).open(self.path(&claimed.id, "log"))?;
        append_bytes(&log, &record_lines(&mut listing(&claimed.record.released), &claimed.record)?)
    }

    /// An entry of the earlier format (data, log, `ID.json`) brought to this one: its
    /// record appended to its log, durably, then the JSON file removed. Left alone while
    /// a daemon holds it.
    fn migrate(&self, id: &str) -> std::io::Result<()> {
        let data = File::open(self.path(id, "data"))?;
        if !try_lock(&data) {
            return Ok(());
        }
        let json = self.path(id, "json");
        let record: Record = serde_json::from_slice(&std::fs::read(&json)?).map_err(std::io::Error::other)?;
        let log = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(self.path(id, "log"))?;
        append_bytes(&log, &record_lines(&mut None, &record)?)?;
        log.sync_all()?;
        std::fs::remove_file(json)
    }

    /// A new entry, without a record yet: a spare when there is one, else new files
    /// (the data file locked).
    pub fn new_entry(&self) -> std::io::Result<Entry> {
        if let Some(spare) = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(spare);
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let open =
            |path: &Path| std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path);
        loop {
            let id = format!("{}-{}-{:08x}", now_secs(), std::process::id(), rand::random::<u32>());
            let data = match open(&self.path(&id, "data")) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            if !try_lock(&data) {
                return Err(std::io::Error::other("cannot lock a new staging file"));
            }
            self.keep_reserve();
            let log = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(self.path(&id, "log"))?;
            return Ok(Entry { id, data, log, dir_durable: false });
        }
    }

    /// Ends entry `entry`: emptied (the log first: it is no entry from then on) and kept
    /// as a spare, or removed when there are spares enough or it cannot be emptied.
    pub fn finish(&self, entry: Entry) {
        if self.is_closing() {
            return self.remove(&entry.id);
        }
        let emptied = entry.log.set_len(0).and_then(|()| entry.data.set_len(0));
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        if emptied.is_ok() && spares.len() < MAX_SPARES {
            spares.push(entry);
            return;
        }
        drop(spares);
        self.remove(&entry.id);
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

    /// Removes this daemon's spares: when it ends, its writers done. Entries finished
    /// from then on are removed too.
    pub fn remove_spares(&self) {
        self.closing.store(true, Ordering::Release);
        let spares = std::mem::take(&mut *self.spares.lock().unwrap_or_else(|e| e.into_inner()));
        for spare in spares {
            self.remove(&spare.id);
        }
    }

    /// Whether the daemon is ending (see [`Journal::remove_spares`]).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Removes entry `id`'s files.
    pub fn remove(&self, id: &str) {
        for ext in ["log", "data"] {
            let _ = std::fs::remove_file(self.path(id, ext));
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.remove_spares();
    }
}

/// Appends one line to a log.
pub fn append(log: &File, op: LogOp) -> std::io::Result<()> {
    append_bytes(log, op.line().as_bytes())
}

/// Appends whole lines to a log, in one write (the log is opened to append).
pub fn append_bytes(log: &File, lines: &[u8]) -> std::io::Result<()> {
    (&*log).write_all(lines)
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

    fn record(key: &str, state: State) -> Record {
        Record {
            store: StoreId::default(),
            key: key.into(),
            state,
            expect: Precondition::Absent,
            base_etag: None,
            base_size: None,
            opts: PutOptions::default(),
            mtime: None,
            upload_id: None,
            released: Vec::new(),
            error: None,
            updated: now_secs(),
        }
    }

    fn part(number: i32) -> CompletedPart {
        CompletedPart { number, etag: format!("\"etag-{number}\"") }
    }

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
        let whole: String = ops.iter().map(|op| op.line()).collect();
        assert_eq!(replay(&format!("{whole}w 7")).ops, ops);
        // Cut inside its last number, a line may still read as a line: without its
        // newline it is not one.
        assert_eq!(replay(&format!("{whole}w 7 1")).ops, ops);
    }

    #[test]
    fn the_record_is_the_last_whole_one_with_the_parts_listed_before_it() {
        let mut logged = Some(BTreeMap::new());
        let mut log = Vec::new();
        let mut first = record("k", State::Open);
        first.upload_id = Some("u1".into());
        first.released = vec![part(1), part(2)];
        log.extend(record_lines(&mut logged, &first).unwrap());
        log.extend(LogOp::Write { offset: 0, len: 4 }.line().into_bytes());
        let mut second = first.clone();
        second.released.push(part(3));
        let lines = record_lines(&mut logged, &second).unwrap();
        let text = String::from_utf8(lines.clone()).unwrap();
        assert!(text.starts_with("p 3 \"etag-3\"\nr {"), "only the new part is listed: {text}");
        assert!(!text.contains("released"), "the record does not repeat the parts");
        log.extend(lines);
        let replayed = replay(std::str::from_utf8(&log).unwrap());
        assert_eq!(replayed.record.unwrap().released, vec![part(1), part(2), part(3)]);
        assert_eq!(replayed.ops, [LogOp::Write { offset: 0, len: 4 }]);

        // A new upload forgets the parts; a torn record leaves the one before.
        let mut third = second.clone();
        third.upload_id = Some("u2".into());
        third.released = vec![part(1)];
        let lines = record_lines(&mut logged, &third).unwrap();
        assert!(String::from_utf8_lossy(&lines).starts_with("P\np 1 \"etag-1\"\nr {"));
        log.extend(&lines);
        assert_eq!(replay(std::str::from_utf8(&log).unwrap()).record.unwrap().upload_id.as_deref(), Some("u2"));
        log.truncate(log.len() - 5);
        let torn = replay(std::str::from_utf8(&log).unwrap()).record.unwrap();
        assert_eq!((torn.upload_id.as_deref(), torn.released.len()), (Some("u1"), 3));
    }

    #[test]
    fn logged_contents_belong_to_the_next_record_and_a_claim_writes_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), StoreId::default());
        let entry = journal.new_entry().unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut log = LogOp::Begin { size: 0, base_limit: 0, must_upload: true }.line().into_bytes();
        log.extend(LogOp::Write { offset: 0, len: 5000 }.line().into_bytes());
        log.extend(contents_line(&bytes));
        log.extend(record_lines(&mut None, &record("small", State::Closed)).unwrap());
        append_bytes(&entry.log, &log).unwrap();
        let replayed = replay(std::str::from_utf8(&log).unwrap());
        assert_eq!(replayed.contents.as_deref(), Some(&bytes[..]));

        // A later record without them (the upload stored the file) has none; one cut
        // short leaves the record before, with its contents.
        let mut later = log.clone();
        later.extend(record_lines(&mut None, &record("small", State::Open)).unwrap());
        assert_eq!(replay(std::str::from_utf8(&later).unwrap()).contents, None);
        let mut torn = log.clone();
        torn.extend(contents_line(b"newer"));
        torn.extend(b"r {\"store\"");
        let replayed = replay(std::str::from_utf8(&torn).unwrap());
        assert_eq!((replayed.record.unwrap().state, replayed.contents.as_deref()), (State::Closed, Some(&bytes[..])));

        // The staging file lost its bytes (a reboot before they were written back).
        entry.data.set_len(3).unwrap();
        let id = entry.id.clone();
        drop(entry);
        let claimed = journal.claim(&id).unwrap().expect("the writer is gone");
        assert_eq!(std::fs::read(journal.path(&id, "data")).unwrap(), bytes);
        assert_eq!(claimed.ops[1], LogOp::Write { offset: 0, len: 5000 });
    }

    #[test]
    fn an_entry_is_live_while_its_data_file_is_locked_and_a_finished_one_is_a_spare() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), StoreId::default());
        let entry = journal.new_entry().unwrap();
        assert!(journal.list().unwrap().is_empty(), "no record, no entry");
        append_bytes(&entry.log, &record_lines(&mut None, &record("a/b/c.txt", State::Closed)).unwrap()).unwrap();
        let found = journal.list().unwrap();
        assert_eq!((found.len(), found[0].live, found[0].record.key.as_str()), (1, true, "a/b/c.txt"));
        assert!(journal.claim(&entry.id).unwrap().is_none(), "a live entry is not taken");

        let id = entry.id.clone();
        journal.finish(entry);
        assert!(journal.list().unwrap().is_empty(), "a finished entry is no entry");
        let again = journal.new_entry().unwrap();
        assert_eq!(again.id, id, "its files are used again");
        assert_eq!((again.log.metadata().unwrap().len(), again.data.metadata().unwrap().len()), (0, 0));

        append_bytes(&again.log, &record_lines(&mut None, &record("d", State::Closed)).unwrap()).unwrap();
        drop(again);
        let claimed = journal.claim(&id).unwrap().expect("the writer is gone");
        assert_eq!(claimed.record.key, "d");
        assert!(journal.list().unwrap()[0].live, "held by its claimer");
        journal.remove(&id);
        assert!(journal.list().unwrap().is_empty());
    }

    #[test]
    fn spares_go_with_their_daemon_or_once_old_and_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), StoreId::default());
        let (a, b) = (journal.new_entry().unwrap(), journal.new_entry().unwrap());
        let b_id = b.id.clone();
        journal.finish(a);
        drop(b);
        let files = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(files(journal.dir()).len(), 5, "two entries and the reserve");
        drop(journal);
        assert_eq!(
            files(&dir.path().join(WRITES_DIR)),
            [format!("{b_id}.data"), format!("{b_id}.log"), "reserve".into()]
        );

        // Unlocked and without a record, b is left alone while young, removed once old.
        let journal = Journal::new(dir.path(), StoreId::default());
        journal.list().unwrap();
        assert_eq!(files(journal.dir()).len(), 3);
        let old = SystemTime::now() - SPARE_GRACE * 2;
        for ext in ["log", "data"] {
            File::options().write(true).open(journal.path(&b_id, ext)).unwrap().set_modified(old).unwrap();
        }
        journal.list().unwrap();
        assert_eq!(files(journal.dir()), ["reserve"]);
    }

    #[test]
    fn an_entry_of_the_earlier_format_is_moved_into_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), StoreId::default());
        std::fs::create_dir_all(journal.dir()).unwrap();
        std::fs::write(journal.path("old", "data"), b"data").unwrap();
        std::fs::write(journal.path("old", "log"), "b 0 0 1\nw 0 4\n").unwrap();
        let mut old = serde_json::to_value(record("k", State::Closed)).unwrap();
        old["released"] = serde_json::to_value(vec![part(1)]).unwrap();
        std::fs::write(journal.path("old", "json"), old.to_string()).unwrap();
        let found = journal.list().unwrap();
        assert_eq!((found.len(), found[0].record.released.as_slice()), (1, &[part(1)][..]));
        assert!(!journal.path("old", "json").exists());
        let claimed = journal.claim("old").unwrap().unwrap();
        assert_eq!(claimed.ops.len(), 2);
        assert_eq!(claimed.record.state, State::Closed);
    }
}
