//! The writer's state machine against the in-memory store, with faults injected where
//! the interleavings that matter happen: parts in flight, refused uploads, throttling.

use std::sync::Arc;
use std::time::Duration;

use super::{MetaChange, WriteConfig, WriteError, WriterHandle};
use crate::store::{
    ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore, ObjectStore, PutOptions, RetryPolicy, RetryingStore,
};

const MIB: u64 = 1 << 20;

struct Fixture {
    memory: MemoryStore,
    faulty: Arc<FaultyStore>,
    store: Arc<dyn ObjectStore>,
    cfg: Arc<WriteConfig>,
    _cache: tempfile::TempDir,
}

fn fixture(part_size: u64, policy: RetryPolicy) -> Fixture {
    let memory = MemoryStore::with_min_part_size(1024);
    let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 42));
    let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(faulty.clone(), policy));
    let cache = tempfile::tempdir().unwrap();
    let cfg = Arc::new(WriteConfig::new(part_size, 4, 64 * MIB, cache.path().to_path_buf(), 64 * MIB));
    Fixture { memory, faulty, store, cfg, _cache: cache }
}

fn no_retries() -> RetryPolicy {
    RetryPolicy { retries: 0, ..RetryPolicy::default() }
}

impl Fixture {
    fn writer(&self, key: &str) -> WriterHandle {
        WriterHandle::spawn(self.store.clone(), self.cfg.clone(), key.into(), PutOptions::default(), None)
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn a_part_written_again_while_its_first_upload_is_in_flight_is_stored_with_the_newest_bytes() {
    let f = fixture(16 << 10, no_retries());
    // The first upload of part 1 is slow, so it would finish after any later one.
    f.faulty.add(FaultRule::new(Fault::Latency(Duration::from_millis(300))).op("UploadPart").times(1));
    let w = f.writer("k");
    let mut expected = bytes(20 << 10, 1);
    w.write(0, expected.clone()).await.unwrap();
    // Part 1 (the first 16 KiB), and only it, is streaming; write into it again.
    let patch = bytes(100, 2);
    w.write(1000, patch.clone()).await.unwrap();
    expected[1000..1100].copy_from_slice(&patch);
    w.close().await.unwrap();
    let stored = f.memory.object("k").unwrap().data;
    assert!(
        stored.as_ref() == expected.as_slice(),
        "stored bytes differ from offset {:?}",
        first_difference(&stored, &expected)
    );
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

#[tokio::test]
async fn attributes_changed_while_streaming_reach_the_stored_object() {
    let f = fixture(16 << 10, no_retries());
    let w = f.writer("k");
    w.write(0, bytes(40 << 10, 1)).await.unwrap();
    w.set_meta(MetaChange { mode: Some(0o100600), ..MetaChange::default() }).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(f.memory.object("k").unwrap().metadata.get("mode").map(String::as_str), Some("33152"));
}

#[tokio::test]
async fn a_refused_upload_keeps_the_old_object_reports_the_cause_and_leaves_no_upload() {
    let f = fixture(16 << 10, no_retries());
    f.memory.put_object("k", bytes(10, 9).into(), &PutOptions::default()).await.unwrap();
    f.faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op("CompleteMultipartUpload"));
    let w = f.writer("k");
    w.write(0, bytes(40 << 10, 1)).await.unwrap();
    let err = w.close().await.unwrap_err();
    match err {
        WriteError::Failed(e) => {
            assert_eq!((e.kind, e.op, e.key.as_str()), (ErrorKind::AccessDenied, "CompleteMultipartUpload", "k"))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(f.memory.object("k").unwrap().data.as_ref() == bytes(10, 9).as_slice(), "the old object is intact");
    assert!(f.memory.unfinished_uploads().is_empty(), "the failed upload was aborted");
    let kept: Vec<_> = std::fs::read_dir(f._cache.path()).unwrap().collect();
    assert_eq!(kept.len(), 1, "the written data stays in its staging file");
}

#[tokio::test]
async fn a_large_write_rides_out_a_throttling_storm() {
    // 30 % of requests answer 503 SlowDown for the first 60 requests; each failed request
    // is retried on its own, so the upload completes.
    let policy =
        RetryPolicy { retries: 10, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(50) };
    let f = fixture(8 * MIB, policy);
    f.faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).probability(0.3).times(60));
    let w = f.writer("big");
    let chunk = bytes(MIB as usize, 7);
    for i in 0..200u64 {
        w.write(i * MIB, chunk.clone()).await.unwrap();
    }
    w.close().await.unwrap();
    assert!(f.faulty.injected() > 5, "the storm happened: {} faults", f.faulty.injected());
    let stored = f.memory.object("big").unwrap().data;
    assert_eq!(stored.len() as u64, 200 * MIB);
    assert!(stored.chunks(MIB as usize).all(|c| c == chunk.as_slice()), "every byte as written");
    assert!(f.memory.unfinished_uploads().is_empty());
}
