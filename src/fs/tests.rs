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
    };
    let write = Arc::new(WriteConfig::new(8 << 20, 4, 64 << 20, cache.path().to_path_buf(), 64 << 20));
    let read = ReadSettings { block_size: 1 << 20, cache_size: 16 << 20, max_prefetch: 8 << 20 };
    let fs = Fs::new(faulty.clone(), cfg, write, UploadDefaults::default(), read);
    Fixture { fs, memory, faulty, _cache: cache }
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
