//! The writer's state machine against the in-memory store, with faults injected where
//! the interleavings that matter happen: parts in flight, refused uploads, throttling.

use std::sync::Arc;
use std::time::Duration;

use super::journal::State;
use super::recovery::{recover, Recovered};
use super::{MetaChange, WriteConfig, WriteError, WriterHandle};
use crate::store::{
    ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore, ObjectStore, Precondition, PutOptions, RetryPolicy,
    RetryingStore,
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
    fixture_with(part_size, policy, |cfg| cfg)
}

fn fixture_with(part_size: u64, policy: RetryPolicy, settings: impl FnOnce(WriteConfig) -> WriteConfig) -> Fixture {
    let memory = MemoryStore::with_min_part_size(1024);
    let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 42));
    let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(faulty.clone(), policy));
    let cache = tempfile::tempdir().unwrap();
    let cfg = Arc::new(settings(WriteConfig::new(part_size, 4, 64 * MIB, cache.path().to_path_buf(), 64 * MIB)));
    Fixture { memory, faulty, store, cfg, _cache: cache }
}

fn no_retries() -> RetryPolicy {
    RetryPolicy { retries: 0, ..RetryPolicy::default() }
}

impl Fixture {
    fn writer(&self, key: &str) -> WriterHandle {
        self.writer_over(key, None, Precondition::None)
    }

    fn writer_over(&self, key: &str, base: Option<super::BaseObject>, expect: Precondition) -> WriterHandle {
        WriterHandle::spawn(self.store.clone(), self.cfg.clone(), key.into(), PutOptions::default(), base, expect)
    }

    /// A writer appending to `key` as stored now (what `open(O_APPEND)` makes).
    async fn appender(&self, key: &str) -> WriterHandle {
        let info = self.store.head_object(key).await.unwrap();
        let base = super::BaseObject { etag: info.etag.clone(), size: info.size };
        self.writer_over(key, Some(base), super::expecting(info.etag.as_deref()))
    }

    fn conflict_copies(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}.conflict-");
        self.memory.keys().into_iter().filter(|k| k.starts_with(&prefix)).collect()
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
    let kept = f.cfg.journal.list().unwrap();
    assert_eq!(kept.len(), 1, "the written data stays in its staging file");
    assert_eq!(kept[0].record.state, State::Failed);
    assert!(kept[0].record.error.as_deref().is_some_and(|e| e.contains("access denied")), "{:?}", kept[0].record);
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

#[tokio::test]
async fn an_append_over_a_version_changed_elsewhere_is_refused_and_kept_under_a_conflict_name() {
    let f = fixture(16 << 10, no_retries());
    f.store.put_object("log", b"one\n".to_vec().into(), &PutOptions::default()).await.unwrap();
    let here = f.appender("log").await;
    let there = f.appender("log").await;
    here.write(4, b"three\n".to_vec()).await.unwrap();
    there.write(4, b"two\n".to_vec()).await.unwrap();
    there.close().await.unwrap();
    let err = here.close().await.unwrap_err();
    assert!(matches!(&err, WriteError::Failed(e) if e.kind == ErrorKind::PreconditionFailed), "{err}");
    assert_eq!(f.memory.object("log").unwrap().data.as_ref(), b"one\ntwo\n", "the other append stands");
    let copies = f.conflict_copies("log");
    assert_eq!(copies.len(), 1, "{:?}", f.memory.keys());
    assert_eq!(f.memory.object(&copies[0]).unwrap().data.as_ref(), b"one\nthree\n");
    assert!(err.to_string().contains(&copies[0]), "the error names the copy: {err}");
}

#[tokio::test]
async fn a_new_file_made_elsewhere_meanwhile_is_not_overwritten_even_when_streamed() {
    let f = fixture(16 << 10, no_retries());
    let w = f.writer_over("new", None, Precondition::Absent);
    let data = bytes(40 << 10, 3);
    w.write(0, data.clone()).await.unwrap();
    f.store.put_object("new", b"theirs".to_vec().into(), &PutOptions::default()).await.unwrap();
    assert!(w.close().await.is_err());
    assert_eq!(f.memory.object("new").unwrap().data.as_ref(), b"theirs");
    let copies = f.conflict_copies("new");
    assert_eq!(copies.len(), 1);
    assert_eq!(f.memory.object(&copies[0]).unwrap().data.as_ref(), data.as_slice());
    assert!(f.memory.unfinished_uploads().is_empty());
}

#[tokio::test]
async fn a_file_deleted_elsewhere_is_made_again_and_a_lost_reply_is_no_conflict() {
    let f = fixture(16 << 10, RetryPolicy { base_delay: Duration::from_millis(1), ..RetryPolicy::default() });
    f.store.put_object("k", b"v1".to_vec().into(), &PutOptions::default()).await.unwrap();
    let w = f.appender("k").await;
    w.write(2, b"+".to_vec()).await.unwrap();
    f.store.delete_object("k").await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(f.memory.object("k").unwrap().data.as_ref(), b"v1+");
    // The PUT is applied but its reply lost; the retry is refused by its own condition.
    f.faulty.add(FaultRule::new(Fault::ErrorAfter(ErrorKind::Interrupted)).op("PutObject").times(1));
    w.write(0, b"v3".to_vec()).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(f.memory.object("k").unwrap().data.as_ref(), b"v3+");
    assert!(f.conflict_copies("k").is_empty(), "{:?}", f.memory.keys());
}

/// Waits until no writer holds an entry of the journal (the writers "died").
async fn writers_gone(f: &Fixture) {
    for _ in 0..500 {
        if f.cfg.journal.list().unwrap().iter().all(|e| !e.live) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a writer still holds its journal entry");
}

const KEEP: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_write_back_close_survives_the_writer_and_the_next_recovery_uploads_it() {
    let f = fixture(16 << 10, no_retries());
    let data = bytes(40 << 10, 5);
    let w = f.writer_over("doc", None, Precondition::Absent);
    w.write(0, data.clone()).await.unwrap();
    w.set_meta(MetaChange { mode: Some(0o100640), ..MetaChange::default() }).await.unwrap();
    w.commit().await.unwrap();
    // The daemon dies before the release that would upload it.
    f.faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op("AbortMultipartUpload"));
    drop(w);
    writers_gone(&f).await;
    assert!(f.memory.object("doc").is_none());
    assert_eq!(f.cfg.journal.list().unwrap()[0].record.state, State::Closed);
    f.faulty.clear();
    let done = recover(f.store.clone(), f.cfg.clone(), KEEP).await;
    assert_eq!(done, Recovered { uploaded: 1, ..Recovered::default() });
    let stored = f.memory.object("doc").unwrap();
    assert!(stored.data.as_ref() == data.as_slice());
    assert_eq!(stored.metadata.get("mode").map(String::as_str), Some("33184"));
    assert!(f.cfg.journal.list().unwrap().is_empty(), "the entry is gone once stored");
    assert!(f.memory.unfinished_uploads().is_empty());
}

#[tokio::test]
async fn a_small_file_closed_with_write_back_has_its_bytes_logged_with_its_record_and_is_recovered() {
    let f = fixture(16 << 10, no_retries());
    let data = bytes(6 << 10, 7);
    let w = f.writer_over("note", None, Precondition::Absent);
    w.write(0, data.clone()).await.unwrap();
    w.commit().await.unwrap();
    drop(w);
    writers_gone(&f).await;
    let entry = f.cfg.journal.list().unwrap().remove(0);
    assert_eq!(entry.record.state, State::Closed);
    let log = std::fs::read_to_string(f.cfg.journal.path(&entry.id, "log")).unwrap();
    let kinds: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    // The close's record follows the bytes; the writer's end added one more (which synced
    // the staging file first: it relies on it).
    assert_eq!(kinds, ["b", "r", "w", "d", "r", "r"], "{log}");
    let done = recover(f.store.clone(), f.cfg.clone(), KEEP).await;
    assert_eq!(done, Recovered { uploaded: 1, ..Recovered::default() });
    assert!(f.memory.object("note").unwrap().data.as_ref() == data.as_slice());
    assert!(f.cfg.journal.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_file_open_when_its_writer_died_is_kept_not_published_and_its_upload_aborted() {
    let f = fixture(16 << 10, no_retries());
    f.memory.put_object("big", b"old".to_vec().into(), &PutOptions::default()).await.unwrap();
    let data = bytes(40 << 10, 6);
    let w = f.appender("big").await;
    w.truncate(0).await.unwrap();
    w.write(0, data.clone()).await.unwrap();
    // A crash leaves the streamed upload behind (here: its abort fails).
    f.faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op("AbortMultipartUpload"));
    drop(w);
    writers_gone(&f).await;
    assert_eq!(f.memory.unfinished_uploads().len(), 1);
    f.faulty.clear();
    let done = recover(f.store.clone(), f.cfg.clone(), KEEP).await;
    assert_eq!(done, Recovered { kept: 1, ..Recovered::default() });
    assert_eq!(f.memory.object("big").unwrap().data.as_ref(), b"old", "the old object is intact");
    assert!(f.memory.unfinished_uploads().is_empty(), "the dead writer's upload is aborted");
    let kept = f.cfg.journal.list().unwrap();
    let lines = crate::recover::lines(&kept);
    assert!(lines[0].starts_with("open") && lines[0].contains("  big  "), "{lines:?}");
    // Published by hand, it replaces the version it was opened over.
    let line = crate::recover::publish(f.store.clone(), f.cfg.clone(), &kept[0].id).await.unwrap();
    assert!(line.starts_with("published big"), "{line}");
    assert!(f.memory.object("big").unwrap().data.as_ref() == data.as_slice());
    assert!(f.cfg.journal.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_recovery_that_cannot_reach_the_store_keeps_the_file_for_the_next_one() {
    let f = fixture(16 << 10, no_retries());
    let w = f.writer_over("small", None, Precondition::Absent);
    w.write(0, b"hello".to_vec()).await.unwrap();
    w.commit().await.unwrap();
    drop(w);
    writers_gone(&f).await;
    f.faulty.set_down(true);
    assert_eq!(recover(f.store.clone(), f.cfg.clone(), KEEP).await, Recovered { failed: 1, ..Recovered::default() });
    assert_eq!(f.cfg.journal.list().unwrap()[0].record.state, State::Closed, "still owed to the store");
    f.faulty.set_down(false);
    assert_eq!(recover(f.store.clone(), f.cfg.clone(), KEEP).await, Recovered { uploaded: 1, ..Recovered::default() });
    assert_eq!(f.memory.object("small").unwrap().data.as_ref(), b"hello");
}

const PART: u64 = 16 << 10;

/// A stream of `parts` parts, written 4 KiB at a time; the most staged at once.
async fn stream_parts(f: &Fixture, w: &WriterHandle, data: &[u8]) -> u64 {
    let mut most = 0;
    for (i, chunk) in data.chunks(4096).enumerate() {
        w.write((i * 4096) as u64, chunk.to_vec()).await.unwrap();
        most = most.max(f.cfg.space.used());
    }
    most
}

#[tokio::test]
async fn a_stream_gives_back_the_staging_of_stored_parts_and_a_seek_back_stores_it_first() {
    let f = fixture_with(PART, no_retries(), |mut cfg| {
        cfg.release_after = 2 * PART;
        cfg
    });
    let mut data = bytes(40 * PART as usize, 7);
    let w = f.writer("long");
    let most = stream_parts(&f, &w, &data).await;
    // The window, the parts in flight (4), the part being filled, and slack of a part.
    assert!(most <= 8 * PART, "staged up to {most} bytes of {}", data.len());
    assert_eq!(f.memory.object("long"), None, "nothing stored before the seek back");
    // A rewrite of the first part, long given back: the file is stored as written so far
    // and the rewrite goes over it.
    w.write(10, b"patched".to_vec()).await.unwrap();
    assert!(f.memory.object("long").unwrap().data.as_ref() == data.as_slice());
    data[10..17].copy_from_slice(b"patched");
    w.close().await.unwrap();
    assert!(f.memory.object("long").unwrap().data.as_ref() == data.as_slice());
    assert!(f.memory.unfinished_uploads().is_empty());
    assert_eq!(f.cfg.space.used(), 0);
}

#[tokio::test]
async fn a_cache_limit_holds_a_stream_and_refuses_random_writes_with_enospc() {
    let f = fixture_with(PART, no_retries(), |cfg| cfg.with_cache_limit(Some(6 * PART)));
    let data = bytes(30 * PART as usize, 8);
    let w = f.writer("seq");
    let most = stream_parts(&f, &w, &data).await;
    assert!(most <= 6 * PART);
    w.close().await.unwrap();
    assert!(f.memory.object("seq").unwrap().data.as_ref() == data.as_slice());
    // Written back to front nothing streams: once the limit is full, nothing can be freed.
    let w = f.writer("random");
    let mut refused = None;
    for i in (0..30u64).rev() {
        if let Err(e) = w.write(i * PART, bytes(PART as usize, i as u8)).await {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(WriteError::Staging(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC)),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    drop(w);
}

#[tokio::test]
async fn a_write_back_stream_whose_staging_was_given_back_is_finished_after_a_crash() {
    let f = fixture_with(PART, no_retries(), |mut cfg| {
        cfg.release_after = 2 * PART;
        cfg
    });
    let data = bytes(20 * PART as usize + 100, 9);
    let w = f.writer_over("film", None, Precondition::Absent);
    stream_parts(&f, &w, &data).await;
    w.commit().await.unwrap();
    // The daemon dies before the release; its parts stay in the store.
    drop(w);
    writers_gone(&f).await;
    let entry = &f.cfg.journal.list().unwrap()[0];
    assert!(!entry.record.released.is_empty(), "parts were given back");
    assert_eq!(f.memory.unfinished_uploads().len(), 1);
    let done = recover(f.store.clone(), f.cfg.clone(), KEEP).await;
    assert_eq!(done, Recovered { uploaded: 1, ..Recovered::default() });
    assert!(f.memory.object("film").unwrap().data.as_ref() == data.as_slice());
    assert!(f.memory.unfinished_uploads().is_empty());
}

/// A command the writer's task accepted but never answered, nor dropped, ends with the
/// task. That is what tokio's channel does to a send that lands just as the receiver drops
/// (a rename's flush racing the release's close): it keeps the command until the last
/// handle is gone, and the asker holds one.
#[tokio::test]
async fn a_command_kept_unanswered_by_an_ended_task_ends_with_it() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let writer = WriterHandle { tx, shown: Default::default() };
    // The task takes the command and ends, its receiver dropped, the command kept alive in
    // the task's output.
    let task = tokio::spawn(async move { rx.recv().await });
    let flush = tokio::time::timeout(Duration::from_secs(30), writer.flush()).await;
    assert!(matches!(flush, Ok(Err(WriteError::Gone))), "a flush to an ended writer was never answered");
    assert!(task.await.unwrap().is_some(), "the command was not kept, so this tested nothing");
}
