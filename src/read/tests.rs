//! The read path against the in-process S3 server over HTTP: requests are counted by the
//! server, so each test checks what was actually sent.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use xosfs_testserver::{pseudo_random_bytes, FaultAction, FaultRule, ServerConfig, TestServer};

use super::{BlockCache, ObjectVersion, Prefetcher, PART};
use crate::config::{ListVersion, S3Config};
use crate::s3::S3Store;
use crate::store::{ErrorKind, ObjectStore, PutOptions};

const MIB: u64 = 1 << 20;

struct Fixture {
    server: TestServer,
    client: Arc<dyn ObjectStore>,
}

async fn fixture() -> Fixture {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let cfg = S3Config {
        endpoint: server.endpoint(),
        region: "us-east-1".into(),
        bucket: "bucket".into(),
        path_style: true,
        list_version: ListVersion::V1,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(60),
        retries: 0,
    };
    let creds =
        SharedCredentialsProvider::new(Credentials::new(server.access_key(), server.secret_key(), None, None, "test"));
    let admin = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(server.endpoint())
            .force_path_style(true)
            .credentials_provider(creds.clone())
            .build(),
    );
    admin.create_bucket().bucket("bucket").send().await.unwrap();
    let client: Arc<dyn ObjectStore> = Arc::new(S3Store::new(&cfg, creds));
    Fixture { server, client }
}

impl Fixture {
    /// Stores `len` pseudo-random bytes as `key`; returns them and the version to read.
    async fn put(&self, key: &str, len: usize, seed: u64) -> (Vec<u8>, ObjectVersion) {
        let data = pseudo_random_bytes(len, seed);
        let etag = self.client.put_object(key, data.clone().into(), &PutOptions::default()).await.unwrap().unwrap();
        (data, ObjectVersion { key: key.into(), etag: etag.into(), size: len as u64 })
    }

    fn gets(&self) -> u64 {
        self.server.stats().count("GetObject")
    }

    fn reset(&self) {
        self.server.stats().reset();
    }

    /// Waits (bounded) for a condition the server reports; false if it never held.
    async fn eventually(&self, what: impl Fn(&TestServer) -> bool) -> bool {
        for _ in 0..200 {
            if what(&self.server) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_blocks_are_evicted_within_the_budget() {
    let f = fixture().await;
    let block = 64 << 10;
    let (data, object) = f.put("big", 32 * block as usize, 1).await;
    let cache = BlockCache::new(f.client.clone(), block, 8 * block);
    f.reset();
    for i in 0..32 {
        let got = cache.block(&object, i).await.unwrap();
        assert_eq!(&got[..], &data[(i * block) as usize..((i + 1) * block) as usize]);
        let usage = cache.usage();
        assert!(usage.cached <= 8 * block, "cache holds {} bytes over a budget of {}", usage.cached, 8 * block);
    }
    assert_eq!(f.gets(), 32);
    assert_eq!(cache.usage().blocks, 8);
    // The newest blocks are still there; the oldest were evicted and cost a GET again.
    cache.block(&object, 31).await.unwrap();
    assert_eq!(f.gets(), 32);
    cache.block(&object, 0).await.unwrap();
    assert_eq!(f.gets(), 33);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_evicted_unread_is_counted_as_wasted() {
    let f = fixture().await;
    let block = 64 << 10;
    let (_, object) = f.put("ahead", 16 * block as usize, 2).await;
    let cache = BlockCache::new(f.client.clone(), block, 8 * block);
    cache.prefetch(&object, 0..4);
    assert!(f.eventually(|_| cache.usage().pending == 0 && cache.usage().blocks == 4).await);
    // Two of the four blocks fetched ahead are read; then eight others push all four out.
    cache.block(&object, 0).await.unwrap();
    assert!(cache.get_cached(&object, 1).is_some());
    for i in 8..16 {
        cache.block(&object, i).await.unwrap();
    }
    assert_eq!(cache.usage().unread_ahead, 2 * block, "blocks 2 and 3 were fetched in vain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_object_is_never_served_from_old_blocks() {
    let f = fixture().await;
    let (old_data, old) = f.put("video.mp4", 3 * MIB as usize, 2).await;
    let cache = BlockCache::new(f.client.clone(), MIB, 64 * MIB);
    assert_eq!(&cache.block(&old, 1).await.unwrap()[..], &old_data[MIB as usize..2 * MIB as usize]);
    let (new_data, new) = f.put("video.mp4", 3 * MIB as usize, 3).await;
    assert_ne!(old.etag, new.etag);
    f.reset();
    // The new version (seen by the next open) is fetched, not answered from the old blocks.
    assert_eq!(&cache.block(&new, 1).await.unwrap()[..], &new_data[MIB as usize..2 * MIB as usize]);
    assert_eq!(f.gets(), 1);
    // A block of the old version that was never cached cannot be fetched any more: the
    // GET is pinned to the old ETag, so bytes of the two versions are never mixed.
    match cache.block(&old, 2).await {
        Err(e) if e.is(ErrorKind::PreconditionFailed) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_block_share_one_get() {
    let f = fixture().await;
    let (data, object) = f.put("shared", 2 * MIB as usize, 4).await;
    let cache = BlockCache::new(f.client.clone(), MIB, 64 * MIB);
    f.server.faults().add(FaultRule {
        op: "GetObject".into(),
        key_contains: Some("shared".into()),
        action: FaultAction::Delay(Duration::from_millis(500)),
        remaining: Some(1),
    });
    f.reset();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, object) = (cache.clone(), object.clone());
            tokio::spawn(async move { cache.block(&object, 0).await.unwrap() })
        })
        .collect();
    for reader in readers {
        assert_eq!(&reader.await.unwrap()[..], &data[..MIB as usize]);
    }
    assert_eq!(f.gets(), 1);
    assert_eq!(cache.usage().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_starts_small_and_widens_its_window() {
    let f = fixture().await;
    let size = 64 * MIB as usize;
    let (data, _) = f.put("stream", size, 5).await;
    let etag = f.client.head_object("stream").await.unwrap().etag;
    let cache = BlockCache::new(f.client.clone(), MIB, 512 * MIB);
    let reader = Prefetcher::new(cache.clone(), "stream", size as u64, etag.as_deref(), 32 * MIB);
    f.reset();
    let mut windows = Vec::new();
    let mut offset = 0;
    while offset < size {
        let got = reader.read(offset as u64, 128 << 10).await.unwrap();
        assert_eq!(&got[..], &data[offset..offset + got.len()]);
        offset += got.len();
        windows.push(reader.window());
    }
    let gets = f.server.stats().get_ranges();
    // The GET of the first bytes is one block (time to first byte), later ones grow to a part.
    let first = gets.iter().find(|g| g.start == 0).expect("a GET from offset 0");
    assert_eq!(first.len, Some(MIB));
    assert!(gets.iter().any(|g| g.len == Some(PART)), "no part-sized GET: {gets:?}");
    assert!(gets.iter().all(|g| g.len.is_some_and(|l| l <= PART)));
    // Once the window is wide, it is topped up a whole part at a time, not a block per read.
    let narrow: Vec<_> =
        gets.iter().filter(|g| g.start >= 40 * MIB && g.start + g.len.unwrap() < size as u64).collect();
    assert!(narrow.iter().all(|g| g.len == Some(PART)), "{narrow:?}");
    // Every byte was fetched exactly once.
    let mut covered: Vec<(u64, u64)> = gets.iter().map(|g| (g.start, g.start + g.len.unwrap())).collect();
    covered.sort();
    assert!(covered.windows(2).all(|w| w[0].1 == w[1].0), "gaps or overlaps: {covered:?}");
    assert_eq!(covered.last().unwrap().1, size as u64);
    // The window grew with what was consumed (one first block beyond it), up to the
    // limit and never beyond.
    assert_eq!(windows[0], (128 << 10) + MIB);
    assert!(windows.iter().enumerate().all(|(n, &w)| w <= (n as u64 + 1) * (128 << 10) + MIB), "{windows:?}");
    assert!(windows.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*windows.last().unwrap(), 32 * MIB);
    // Several GETs were in flight at once.
    assert!(f.server.stats().max_in_flight("GetObject") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_shrink_when_the_budget_is_spent() {
    let f = fixture().await;
    let size = 48 * MIB as usize;
    let (a_data, a) = f.put("a", size, 6).await;
    let (b_data, b) = f.put("b", size, 7).await;
    // 16 MiB of cache: at most 8 MiB reserved for read-ahead, shared by both readers,
    // each of which would like 32 MiB.
    let cache = BlockCache::new(f.client.clone(), MIB, 16 * MIB);
    let ra = Prefetcher::new(cache.clone(), "a", size as u64, Some(&a.etag), 32 * MIB);
    let rb = Prefetcher::new(cache.clone(), "b", size as u64, Some(&b.etag), 32 * MIB);
    let mut shrank = false;
    let mut offset = 0;
    while offset < size {
        for (reader, data) in [(&ra, &a_data), (&rb, &b_data)] {
            let before = reader.window();
            let got = reader.read(offset as u64, 256 << 10).await.unwrap();
            assert_eq!(&got[..], &data[offset..offset + got.len()]);
            shrank |= reader.window() < before;
            let usage = cache.usage();
            assert!(usage.reserved <= 8 * MIB, "{} bytes reserved", usage.reserved);
            assert!(usage.cached + usage.reserved <= 16 * MIB + MIB, "{usage:?}");
        }
        offset += 256 << 10;
    }
    assert!(shrank, "no window shrank under a spent budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reads_fetch_what_they_ask_and_no_more() {
    let f = fixture().await;
    let size = 32 * MIB;
    let (data, object) = f.put("index", size as usize, 8).await;
    let cache = BlockCache::new(f.client.clone(), MIB, 512 * MIB);
    let reader = Prefetcher::new(cache.clone(), "index", size, Some(&object.etag), 128 * MIB);
    f.reset();
    let offsets = [20 * MIB + 4096, 3 * MIB, 31 * MIB + 100, 9 * MIB, 17 * MIB + 65536, MIB + 7];
    for &offset in &offsets {
        let got = reader.read(offset, 65536).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..offset as usize + 65536]);
        assert_eq!(cache.usage().reserved, 0, "read-ahead after a random read");
    }
    let gets = f.server.stats().get_ranges();
    assert_eq!(gets.len(), offsets.len());
    assert!(gets.iter().all(|g| g.len == Some(65536)), "{gets:?}");
    assert_eq!(cache.usage().reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_reader_cancels_its_fetches() {
    let f = fixture().await;
    let size = 64 * MIB;
    let (_, object) = f.put("movie", size as usize, 9).await;
    let cache = BlockCache::new(f.client.clone(), MIB, 512 * MIB);
    let reader = Prefetcher::new(cache.clone(), "movie", size, Some(&object.etag), 128 * MIB);
    reader.read(0, 4096).await.unwrap();
    // From now on the store takes a minute per GET: only cancellation ends them sooner.
    f.server.faults().add(FaultRule {
        op: "GetObject".into(),
        key_contains: Some("movie".into()),
        action: FaultAction::Delay(Duration::from_secs(60)),
        remaining: None,
    });
    // Sequential reads within the cached first block widen the window and start GETs.
    for offset in (4096..MIB).step_by(128 << 10) {
        reader.read(offset, 4096).await.unwrap();
    }
    assert!(f.eventually(|s| s.stats().in_flight("GetObject") >= 1).await, "no read-ahead GET started");
    assert!(cache.usage().reserved > 0);
    drop(reader);
    assert!(f.eventually(|s| s.stats().in_flight("GetObject") == 0).await, "GETs still running after the drop");
    // Aborted fetch tasks give their reservations back as the runtime drops them.
    assert!(f.eventually(|_| cache.usage().reserved == 0).await, "reserved: {}", cache.usage().reserved);
    assert_eq!(cache.usage().pending, 0);
}

/// What a reader of `f`'s object fetched: the bytes of every GET the server received,
/// once the reader's fetches are done.
async fn fetched(f: &Fixture, cache: &BlockCache) -> u64 {
    assert!(f.eventually(|_| cache.usage().pending == 0).await, "fetches still pending");
    f.server.stats().get_ranges().iter().map(|g| g.len.expect("a ranged GET")).sum()
}

/// A reader over a fresh cache of 1 MiB blocks, and the object's bytes.
async fn probe_reader(f: &Fixture, key: &str, size: u64) -> (Vec<u8>, Arc<BlockCache>, Prefetcher) {
    let (data, object) = f.put(key, size as usize, 10).await;
    let cache = BlockCache::new(f.client.clone(), MIB, 512 * MIB);
    let reader = Prefetcher::new(cache.clone(), key, size, Some(&object.etag), 128 * MIB);
    f.reset();
    (data, cache, reader)
}

/// Reads `len` bytes at `offset` in requests of `request` bytes, as the kernel splits a
/// read; checks them and returns how many there were.
async fn read_checked(reader: &Prefetcher, data: &[u8], offset: u64, len: u64, request: u32) -> u64 {
    let mut at = offset;
    while at < offset + len {
        let got = reader.read(at, request.min((offset + len - at) as u32)).await.unwrap();
        assert_eq!(&got[..], &data[at as usize..at as usize + got.len()], "at {at}");
        assert!(!got.is_empty(), "read at {at} returned nothing");
        at += got.len() as u64;
    }
    len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_probe_fetches_at_most_twice_what_it_read_plus_one_first_window() {
    let f = fixture().await;
    let (data, cache, reader) = probe_reader(&f, "head", 64 * MIB).await;
    // `head -c 1M`: the kernel's first small read, then its read-ahead requests.
    let mut read = read_checked(&reader, &data, 0, 16 << 10, 16 << 10).await;
    read += read_checked(&reader, &data, 16 << 10, MIB - (16 << 10), 128 << 10).await;
    let fetched = fetched(&f, &cache).await;
    assert!(fetched <= 2 * read + MIB, "fetched {fetched} bytes for {read} read");
    // The first GET is one block, for time to first byte.
    assert_eq!(f.server.stats().get_ranges()[0].len, Some(MIB));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_and_last_mib_probe_fetches_at_most_twice_what_it_read_plus_one_first_window() {
    let f = fixture().await;
    let size = 64 * MIB;
    let (data, cache, reader) = probe_reader(&f, "thumbnail", size).await;
    let mut read = read_checked(&reader, &data, 0, MIB, 128 << 10).await;
    read += read_checked(&reader, &data, size - MIB, MIB, 128 << 10).await;
    let fetched = fetched(&f, &cache).await;
    assert!(fetched <= 2 * read + MIB, "fetched {fetched} bytes for {read} read");
    // The seek to the end starts over: the last MiB costs what it read, no read-ahead.
    let tail: u64 =
        f.server.stats().get_ranges().iter().filter(|g| g.start >= size - MIB).map(|g| g.len.unwrap()).sum();
    assert_eq!(tail, MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ffprobe_like_probe_fetches_at_most_twice_what_it_read_plus_one_first_window() {
    let f = fixture().await;
    let size = 64 * MIB;
    let (data, cache, reader) = probe_reader(&f, "movie.mp4", size).await;
    // Small reads of the header, a seek to the index at the end, a seek back to the first
    // packets (past the first block), and a few reads there.
    let mut read = read_checked(&reader, &data, 0, 64 << 10, 32 << 10).await;
    read += read_checked(&reader, &data, size - (300 << 10), 300 << 10, 32 << 10).await;
    read += read_checked(&reader, &data, 3 * MIB + 12345, 256 << 10, 32 << 10).await;
    read += read_checked(&reader, &data, 40 << 10, 32 << 10, 32 << 10).await;
    let fetched = fetched(&f, &cache).await;
    assert!(fetched <= 2 * read + MIB, "fetched {fetched} bytes for {read} read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_shrinks_the_window_and_a_stream_then_grows_from_what_it_consumes() {
    let f = fixture().await;
    let size = 128 * MIB;
    let (data, cache, reader) = probe_reader(&f, "seek", size).await;
    read_checked(&reader, &data, 0, 40 * MIB, 128 << 10).await;
    assert!(reader.window() >= 32 * MIB, "window {}", reader.window());
    reader.read(100 * MIB, 4096).await.unwrap();
    assert_eq!(reader.window(), 4096);
    fetched(&f, &cache).await;
    f.reset();
    // From there on, a stream fetches at most what it consumed ahead of it.
    let mut consumed = 0;
    for _ in 0..16 {
        consumed += read_checked(&reader, &data, 100 * MIB + 4096 + consumed, 128 << 10, 128 << 10).await;
        assert!(reader.window() <= consumed + 4096, "window {} after {consumed}", reader.window());
    }
    let fetched = fetched(&f, &cache).await;
    assert!(fetched <= 2 * (consumed + 4096), "fetched {fetched} bytes for {consumed} read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_read_ahead_batches_keep_the_stream_and_fetch_each_byte_once() {
    let f = fixture().await;
    let size = 96 * MIB;
    let (data, cache, reader) = probe_reader(&f, "batches", size).await;
    let reader = Arc::new(reader);
    let data = Arc::new(data);
    // The kernel's first read is synchronous; its read-ahead requests come in batches.
    let mut offset = read_checked(&reader, &data, 0, 128 << 10, 128 << 10).await;
    while offset < size {
        // The kernel's read-ahead batch of four requests arrives last one first, and the
        // batch after it while the batch is still being served.
        let mut tasks = Vec::new();
        for n in (0..4).rev() {
            let (reader, data, at) = (reader.clone(), data.clone(), offset + n * (128 << 10));
            tasks.push(tokio::spawn(async move {
                let got = reader.read(at, 128 << 10).await.unwrap();
                assert_eq!(&got[..], &data[at as usize..at as usize + got.len()]);
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        offset += 4 * (128 << 10);
        let fetched_so_far: u64 = f.server.stats().get_ranges().iter().map(|g| g.len.unwrap()).sum();
        assert!(fetched_so_far <= 2 * offset + MIB, "fetched {fetched_so_far} after reading {offset}");
    }
    // Never taken for a seek: the window reached its limit, every GET was of whole blocks
    // (no exact-range reads), and no byte was fetched twice.
    assert_eq!(reader.window(), size + MIB);
    fetched(&f, &cache).await;
    let gets = f.server.stats().get_ranges();
    assert!(gets.iter().all(|g| g.start % MIB == 0), "{gets:?}");
    let mut covered: Vec<(u64, u64)> = gets.iter().map(|g| (g.start, g.start + g.len.unwrap())).collect();
    covered.sort();
    assert!(covered.windows(2).all(|w| w[0].1 <= w[1].0), "overlaps: {covered:?}");
}
