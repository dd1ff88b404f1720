//! The core over the in-memory store, for what the reference model does not reach:
//! listings of many pages, failed pages, what readdir hands back per call.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Fs, UploadDefaults, ROOT_INO};
use crate::config::{FsConfig, ReadSettings};
use crate::store::{ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore, ObjectStore, PutOptions};
use crate::write::WriteConfig;

struct Fixture {
    fs: Fs,
    memory: MemoryStore,
    faulty: Arc<FaultyStore>,
    _cache: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let memory = MemoryStore::default();
    let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 3));
    let cache = tempfile::tempdir().unwrap();
    let fs = core_over(faulty.clone(), &cache);
    Fixture { fs, memory, faulty, _cache: cache }
}

/// The core over `store`, staging in `cache`.
fn core_over(store: Arc<dyn ObjectStore>, cache: &tempfile::TempDir) -> Fs {
    let cfg = FsConfig {
        prefix: String::new(),
        read_only: false,
        uid: 0,
        gid: 0,
        file_mode: 0o644,
        dir_mode: 0o755,
        metadata_ttl: Duration::from_secs(60),
        entry_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        umask: 0,
        root_mode: None,
        presign_expiry: Duration::from_secs(3600),
    };
    let write = Arc::new(WriteConfig::new(8 << 20, 4, 64 << 20, cache.path().to_path_buf(), 64 << 20));
    let read = ReadSettings { block_size: 1 << 20, cache_size: 16 << 20, max_prefetch: 8 << 20 };
    Fs::new(store, cfg, write, UploadDefaults::default(), read)
}

impl Fixture {
    async fn put_many(&self, n: usize) {
        for i in 0..n {
            self.memory
                .put_object(&format!("d/f{i:05}"), Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_failed_listing_page_is_asked_for_again_without_repeating_entries() {
    let f = fixture();
    f.put_many(2500).await;
    let dir = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    let fh = f.fs.opendir(dir.ino).await.unwrap();
    // The second page fails once.
    f.faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)).op("ListObjects").skip(1).times(1));
    let mut names = Vec::new();
    let mut offset = 0;
    let mut failures = 0;
    loop {
        match f.fs.readdir(fh, offset, 256).await {
            Ok(entries) if entries.is_empty() => break,
            Ok(entries) => {
                offset = entries.last().unwrap().0;
                names.extend(entries.into_iter().map(|(_, e)| e.name));
            }
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 1);
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no entry twice");
    assert_eq!(names.len(), 2500 + 2, "every file, with . and ..");
}

#[tokio::test]
async fn readdir_hands_back_at_most_what_was_asked_for() {
    let f = fixture();
    f.put_many(1500).await;
    let dir = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    let fh = f.fs.opendir(dir.ino).await.unwrap();
    let first = f.fs.readdir(fh, 0, 100).await.unwrap();
    assert_eq!(first.len(), 100);
    let later = f.fs.readdir(fh, 1000, 100).await.unwrap();
    assert_eq!(later.len(), 100);
    assert_eq!(later[0].0, 1001);
}

impl Fixture {
    /// Reads the whole directory as the kernel does, `want` entries a call; with `plus`
    /// the kernel takes a reference on every entry, as for readdirplus.
    async fn read_dir(&self, ino: u64, want: usize, plus: bool) -> Vec<(String, u64)> {
        let fh = self.fs.opendir(ino).await.unwrap();
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.fs.readdir(fh, offset, want).await.unwrap();
            let Some(&(last, _)) = page.last() else { break };
            offset = last;
            for (_, e) in page {
                if plus && e.name != "." && e.name != ".." {
                    self.fs.remember(e.attr.ino);
                }
                entries.push((e.name, e.attr.ino));
            }
        }
        self.fs.releasedir(fh);
        entries
    }
}

#[tokio::test]
async fn listing_a_large_directory_leaves_few_inodes_and_its_names_found_again() {
    let f = fixture();
    f.put_many(25_000).await;
    let dir = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    let entries = f.read_dir(dir.ino, 256, false).await;
    assert_eq!(entries.len(), 25_000 + 2);
    let count = f.fs.inode_count();
    assert!(count < 12_000, "{count} inodes");
    // A name pruned from the table is asked for again, not taken for missing.
    f.memory.reset_requests();
    let attr = f.fs.lookup(dir.ino, "f00000").await.unwrap();
    assert_eq!(attr.size, 1);
    assert_eq!(f.memory.requests("HeadObject"), 1);
}

#[tokio::test]
async fn readdirplus_entries_stay_known_through_a_prune() {
    let f = fixture();
    f.put_many(12_000).await;
    let dir = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    let entries = f.read_dir(dir.ino, 64, true).await;
    assert_eq!(entries.len(), 12_000 + 2);
    // Every entry the kernel took a reference on is an inode the core still knows.
    for (name, ino) in entries.iter().skip(2) {
        let attr = f.fs.getattr(*ino).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(attr.ino, *ino);
    }
}

#[tokio::test]
async fn new_names_in_a_directory_cost_one_listing_not_a_round_trip_each() {
    let f = fixture();
    f.put_many(3).await;
    f.memory.put_object("e/old", Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    let d = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    f.memory.reset_requests();
    for i in 0..100 {
        let name = format!("new{i}");
        assert!(matches!(f.fs.lookup(d.ino, &name).await, Err(super::FsError::NotFound)));
        let (_, fh) = f.fs.create(d.ino, &name, 0o644, 0, 0, 1).await.unwrap();
        f.fs.release(fh).await.unwrap();
    }
    let (lists, heads) = (f.memory.requests("ListObjects"), f.memory.requests("HeadObject"));
    // The misses before the burst: a listing and a HEAD each; then one listing.
    let burst = u64::from(super::miss_bursts::BURST);
    assert_eq!((lists, heads), (burst + 1, burst), "lookups of new names went to the store");
    assert!(f.fs.lookup(d.ino, "f00001").await.is_ok(), "a listed name is still found");
    assert!(f.fs.lookup(d.ino, "new7").await.is_ok(), "a name made here is found");

    // A directory made here is known empty: its new names cost nothing.
    let e = f.fs.mkdir(ROOT_INO, "made", 0o755, 0, 0).await.unwrap();
    f.memory.reset_requests();
    for i in 0..20 {
        assert!(matches!(f.fs.lookup(e.ino, &format!("n{i}")).await, Err(super::FsError::NotFound)));
    }
    assert_eq!(f.memory.requests("ListObjects") + f.memory.requests("HeadObject"), 0);
}

#[tokio::test]
async fn a_name_made_elsewhere_after_the_burst_listing_shows_after_the_negative_ttl() {
    let mut f = fixture();
    f.fs.cfg.negative_ttl = Duration::from_millis(300);
    f.put_many(1).await;
    let d = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    for i in 0..super::miss_bursts::BURST {
        assert!(f.fs.lookup(d.ino, &format!("x{i}")).await.is_err());
    }
    f.memory.put_object("d/late", Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    assert!(f.fs.lookup(d.ino, "late").await.is_err(), "within the TTL the listing answers");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(f.fs.lookup(d.ino, "late").await.is_ok(), "after it the store does");
}

#[tokio::test]
async fn an_account_has_buckets_at_the_top_and_nothing_else() {
    use crate::store::account::memory::MemoryBuckets;
    use crate::store::{Account, AccountStore};
    let buckets = Arc::new(MemoryBuckets::with(&["alpha"]));
    let account = Arc::new(Account::new(buckets.clone(), Duration::from_secs(60)));
    let cache = tempfile::tempdir().unwrap();
    let fs = core_over(Arc::new(AccountStore::new(account.clone())), &cache).with_account(account);

    let beta = fs.mkdir(ROOT_INO, "beta", 0o755, 0, 0).await.unwrap();
    assert!(buckets.store("beta").is_some(), "mkdir at the top made a bucket");
    let (file, fh) = fs.create(beta.ino, "f", 0o644, 0, 0, 1).await.unwrap();
    fs.write(fh, 0, b"data".to_vec()).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(buckets.store("beta").unwrap().object("f").unwrap().data.as_ref(), b"data");

    fn errno<T>(r: Result<T, super::FsError>) -> i32 {
        r.map(drop).unwrap_err().errno()
    }
    assert_eq!(errno(fs.rmdir(ROOT_INO, "beta").await), libc::ENOTEMPTY);
    assert_eq!(errno(fs.mkdir(ROOT_INO, "No_Good", 0o755, 0, 0).await), libc::EINVAL);
    assert_eq!(errno(fs.create(ROOT_INO, "top", 0o644, 0, 0, 1).await), libc::EPERM);
    assert_eq!(errno(fs.rename(beta.ino, "f", ROOT_INO, "f", false).await), libc::EPERM);
    let alpha = fs.lookup(ROOT_INO, "alpha").await.unwrap();
    assert_eq!(errno(fs.rename(beta.ino, "f", alpha.ino, "f", false).await), libc::EXDEV);
    let chmod = super::AttrChange { mode: Some(0o700), ..Default::default() };
    let by = super::Changer { fh: None, pid: 1 };
    let kept = fs.set_attributes(beta.ino, by, chmod).await.unwrap();
    assert_eq!(kept.perm, 0o700, "a bucket's directory keeps its mode for the mount's lifetime");
    assert!(fs.set_attributes(file.ino, by, chmod).await.is_ok(), "files in a bucket are as in a bucket mount");

    fs.unlink(beta.ino, "f").await.unwrap();
    fs.rmdir(ROOT_INO, "beta").await.unwrap();
    assert!(buckets.store("beta").is_none(), "rmdir at the top deleted the bucket");
}

#[test]
fn a_descriptor_opened_by_a_thread_belongs_to_its_process() {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
        let _ = done_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    assert_ne!(tid, std::process::id(), "a spawned thread has an id of its own");
    assert_eq!(super::thread_group_of(tid), Some(std::process::id()));
    let opener = super::open_files::Opener::new(tid);
    assert_eq!(opener.is(tid), Some(true), "the opening thread");
    assert_eq!(opener.is(std::process::id()), Some(true), "another thread of its process");
    assert_eq!(opener.is(1), Some(false), "another process");
    drop(done_tx);
    thread.join().unwrap();
    let gone = super::open_files::Opener::new(tid);
    assert_eq!(gone.is(std::process::id()), None, "an opener whose thread is gone cannot be told");
}

#[tokio::test]
async fn lookups_and_stats_memory_can_answer_end_at_their_first_poll_without_a_runtime_or_a_request() {
    use futures_util::FutureExt;
    let f = fixture();
    f.put_many(1).await;
    let dir = f.fs.lookup(ROOT_INO, "d").await.unwrap();
    assert!(f.fs.lookup_cached(dir.ino, "f00000").is_none(), "never seen: the store is asked");
    let file = f.fs.lookup(dir.ino, "f00000").await.unwrap();
    assert_eq!(f.fs.lookup(dir.ino, "gone").await.map(|a| a.ino).map_err(|e| e.errno()), Err(libc::ENOENT));
    f.memory.reset_requests();
    // Polled once from a thread of its own, as the FUSE adapter polls a request on its
    // session thread: nothing here may wait or need the runtime.
    let fs = &f.fs;
    std::thread::scope(|s| {
        s.spawn(|| {
            let errno = |r: Result<crate::fs::Attr, super::FsError>| r.map(|a| a.ino).map_err(|e| e.errno());
            assert_eq!(fs.lookup(dir.ino, "f00000").now_or_never().unwrap().unwrap().ino, file.ino);
            assert_eq!(errno(fs.lookup(dir.ino, "gone").now_or_never().unwrap()), Err(libc::ENOENT));
            assert_eq!(fs.getattr(file.ino).now_or_never().unwrap().unwrap().size, 1);
            assert_eq!(fs.getattr(ROOT_INO).now_or_never().unwrap().unwrap().ino, ROOT_INO);
            assert_eq!(errno(fs.lookup(file.ino, "x").now_or_never().unwrap()), Err(libc::ENOTDIR));
        });
    });
    let sent: u64 = ["HeadObject", "ListObjects", "ListObjectsV2"].iter().map(|op| f.memory.requests(op)).sum();
    assert_eq!(sent, 0);
}
