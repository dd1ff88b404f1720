//! Reading data: whole large objects, random ranges, EOF, concurrency, and standard tools.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{sha256, Server};
use rand::{Rng, SeedableRng};
use xosfs_testserver::pseudo_random_bytes as random_bytes;
use xosfs_testserver::{FaultAction, FaultRule};

#[test]
fn large_object_reads_back_identically_at_any_offset() {
    let server = Server::fs();
    let size = 64 << 20;
    let data = random_bytes(size, 64);
    server.put("media/big.bin", data.clone());
    let m = server.mount(&[]);

    let read = std::fs::read(m.join("media/big.bin")).unwrap();
    assert_eq!(read.len(), size);
    assert_eq!(sha256(&read), sha256(&data));

    let file = File::open(m.join("media/big.bin")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(200);
    for _ in 0..200 {
        let offset = rng.random_range(0..size as u64 + 16);
        let len = rng.random_range(1..=(3 << 20));
        let mut buf = vec![0u8; len];
        let n = read_fully_at(&file, &mut buf, offset);
        let start = (offset as usize).min(size);
        let end = (offset as usize + len).min(size);
        assert_eq!(n, end - start, "length at offset {offset} len {len}");
        assert!(buf[..n] == data[start..end], "data at offset {offset} len {len}");
    }
    // Exactly at and around the end.
    let mut buf = vec![0u8; 100];
    assert_eq!(read_fully_at(&file, &mut buf, size as u64 - 10), 10);
    assert_eq!(&buf[..10], &data[size - 10..]);
    assert_eq!(read_fully_at(&file, &mut buf, size as u64), 0);
}

/// pread until the buffer is full or EOF, as a careful reader does.
fn read_fully_at(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    done
}

#[test]
fn empty_and_small_objects() {
    let server = Server::memory();
    server.put("empty", "");
    server.put("one", "1");
    let m = server.mount(&[]);
    assert_eq!(std::fs::read(m.join("empty")).unwrap(), b"");
    assert_eq!(std::fs::metadata(m.join("empty")).unwrap().len(), 0);
    assert_eq!(std::fs::read(m.join("one")).unwrap(), b"1");
}

#[test]
fn concurrent_readers_get_their_own_data() {
    let server = Server::fs();
    let files: Vec<(String, Vec<u8>)> =
        (0..8).map(|i| (format!("c/file{i}"), random_bytes((3 << 20) + i * 1000, i as u64 + 1))).collect();
    server.put_many(files.clone());
    let m = Arc::new(server.mount(&[]));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let m = m.clone();
            let (key, data) = files[t % files.len()].clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    assert_eq!(sha256(&std::fs::read(m.join(&key)).unwrap()), sha256(&data), "{key}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_slow_read_does_not_hold_up_other_requests() {
    let server = Server::memory();
    server.put("slow/stuck.bin", random_bytes(1 << 20, 9));
    server.put("fast/a.txt", "quick");
    server.put("other/b.txt", "listed");
    let m = Arc::new(server.mount(&[]));
    // Every GET of the slow object now takes 8 s on the server.
    server.server.faults().add(FaultRule {
        op: "GetObject".into(),
        key_contains: Some("stuck".into()),
        action: FaultAction::Delay(Duration::from_secs(8)),
        remaining: None,
    });
    let slow_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (m, done) = (m.clone(), slow_done.clone());
        std::thread::spawn(move || {
            let data = std::fs::read(m.join("slow/stuck.bin")).unwrap();
            done.store(true, Ordering::SeqCst);
            data.len()
        })
    };
    // Wait until the slow GET is in flight at the server.
    while server.server.stats().count("GetObject") == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(common::ls(&m.join("other")), ["b.txt"]);
    assert_eq!(std::fs::read_to_string(m.join("fast/a.txt")).unwrap(), "quick");
    assert!(!slow_done.load(Ordering::SeqCst), "the other requests waited for the slow read");
    assert_eq!(reader.join().unwrap(), 1 << 20);
}

#[test]
fn standard_tools_copy_and_checksum_a_tree() {
    let server = Server::fs();
    let tree: Vec<(String, Vec<u8>)> = vec![
        ("tree/a.txt".into(), b"alpha\n".to_vec()),
        ("tree/sub/b.bin".into(), random_bytes(300_000, 3)),
        ("tree/sub/deeper/c.txt".into(), b"gamma\n".to_vec()),
    ];
    server.put_many(tree.clone());
    let m = server.mount(&[]);
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(m.join("tree")).arg(out.path()).status().unwrap();
    assert!(status.success());
    for (key, data) in &tree {
        assert_eq!(&std::fs::read(out.path().join(key)).unwrap(), data, "{key}");
    }
    let sums = std::process::Command::new("sha256sum").arg("tree/sub/b.bin").current_dir(m.path()).output().unwrap();
    assert!(String::from_utf8(sums.stdout).unwrap().starts_with(&sha256(&tree[1].1)));
    let ls = std::process::Command::new("ls").args(["-lR", "tree"]).current_dir(m.path()).output().unwrap();
    let listing = String::from_utf8(ls.stdout).unwrap();
    assert!(ls.status.success() && listing.contains("300000") && listing.contains("c.txt"), "{listing}");
}

#[test]
fn sequential_reads_are_prefetched_in_large_chunks_and_random_reads_are_not() {
    let server = Server::memory();
    let data = random_bytes(48 << 20, 48);
    server.put("seq.bin", data.clone());
    let m = server.mount(&[]);
    server.server.stats().reset();
    assert_eq!(sha256(&std::fs::read(m.join("seq.bin")).unwrap()), sha256(&data));
    let gets = server.server.stats().get_ranges();
    // Kernel reads are at most 1 MiB; the window grows with what was consumed, and once it
    // is 8 MiB (read-ahead reaching 15 MiB) bytes come in GETs of 4 MiB and more, and
    // hardly any twice.
    let total: u64 = gets.iter().map(|g| g.len.unwrap()).sum();
    let large: u64 = gets.iter().map(|g| g.len.unwrap()).filter(|&l| l >= 4 << 20).sum();
    assert!(large >= 32 << 20, "only {large} of 48 MiB in large GETs: {gets:?}");
    assert!(total <= 52 << 20, "{total} bytes fetched for a 48 MiB file: {gets:?}");

    // Scattered reads of an object nobody streamed: small GETs, one per read at most.
    let other = random_bytes(48 << 20, 49);
    server.put("index.bin", other.clone());
    let file = File::open(m.join("index.bin")).unwrap();
    server.server.stats().reset();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let offset = rng.random_range(0..(48u64 << 20) - 4096) & !4095;
        let mut buf = vec![0u8; 4096];
        file.read_exact_at(&mut buf, offset).unwrap();
        assert_eq!(buf, other[offset as usize..offset as usize + 4096]);
    }
    let gets = server.server.stats().get_ranges();
    assert!(gets.len() <= 20, "{} GETs for 20 random reads: {gets:?}", gets.len());
    // The kernel may widen a 4 KiB read a little; no read-ahead chunk is fetched.
    assert!(gets.iter().all(|g| g.len.is_some_and(|l| l <= 256 << 10)), "{gets:?}");
}

#[test]
fn rereads_come_from_memory_and_a_changed_object_is_read_anew() {
    let server = Server::memory();
    let first = random_bytes(12 << 20, 50);
    server.put("clip.mp4", first.clone());
    // --attr-ttl 0: every open asks the store which version is current.
    let m = server.mount(&["--attr-ttl", "0"]);
    assert_eq!(sha256(&std::fs::read(m.join("clip.mp4")).unwrap()), sha256(&first));
    let gets = server.server.stats().count("GetObject");
    assert!(gets >= 1);
    for _ in 0..3 {
        assert_eq!(sha256(&std::fs::read(m.join("clip.mp4")).unwrap()), sha256(&first));
    }
    assert_eq!(server.server.stats().count("GetObject"), gets, "re-reads of an unchanged object went to the store");

    // Another client replaces it with different bytes of the same size.
    let second = random_bytes(12 << 20, 51);
    server.put("clip.mp4", second.clone());
    assert_eq!(sha256(&std::fs::read(m.join("clip.mp4")).unwrap()), sha256(&second));
    assert!(server.server.stats().count("GetObject") > gets);
}

/// Bytes of `key` the server sent (asked for) since the last reset, once the mount's GETs
/// are over: a reader's fetches end with its release, after the reading program exits.
fn fetched(server: &Server, key: &str) -> u64 {
    let stats = server.server.stats();
    for _ in 0..100 {
        if stats.in_flight("GetObject") == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats.in_flight("GetObject"), 0, "GETs still running");
    stats.get_ranges().iter().filter(|g| g.key == key).map(|g| g.len.expect("a ranged GET")).sum()
}

#[test]
fn probes_of_a_big_object_fetch_at_most_twice_what_they_read_plus_one_first_window() {
    const MIB: u64 = 1 << 20;
    let server = Server::memory();
    let size = 64 << 20;
    let data = random_bytes(size, 66);
    server.put("video.mkv", data.clone());
    // One first window is one block: --block-size 1M (the default).
    let m = server.mount(&["--block-size", "1M"]);
    let path = m.join("video.mkv");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);

    server.server.stats().reset();
    let head = std::process::Command::new("head").args(["-c", "1M"]).arg(&path).output().unwrap();
    assert!(head.status.success());
    assert!(head.stdout == data[..MIB as usize], "head read other bytes");
    let fetched_by_head = fetched(&server, "video.mkv");
    assert!(fetched_by_head <= 2 * MIB + MIB, "head -c 1M fetched {fetched_by_head} bytes");

    // A thumbnailer: the first and the last MiB, from a fresh mount (nothing cached).
    drop(m);
    let m = server.mount(&["--block-size", "1M"]);
    let file = File::open(m.join("video.mkv")).unwrap();
    server.server.stats().reset();
    let mut buf = vec![0u8; MIB as usize];
    for offset in [0, size as u64 - MIB] {
        file.read_exact_at(&mut buf, offset).unwrap();
        assert!(buf == data[offset as usize..(offset + MIB) as usize], "bytes at {offset}");
    }
    drop(file);
    let fetched_by_probe = fetched(&server, "video.mkv");
    assert!(fetched_by_probe <= 2 * 2 * MIB + MIB, "first and last MiB fetched {fetched_by_probe} bytes");
}

#[test]
fn with_a_disk_cache_a_reread_after_a_remount_comes_from_the_disk() {
    let server = Server::memory();
    let data = random_bytes((6 << 20) + 12345, 67);
    server.put("film.mkv", data.clone());
    let disk = tempfile::tempdir().unwrap();
    let disk_arg = disk.path().join("blocks-of-bucket");
    let args = ["--disk-cache", disk_arg.to_str().unwrap(), "--disk-cache-size", "64M"];
    let m = server.mount(&args);
    assert_eq!(sha256(&std::fs::read(m.join("film.mkv")).unwrap()), sha256(&data));
    // Blocks go to the disk right after they reach the reader: wait for all 7.
    let on_disk = || {
        let blocks = std::fs::read_dir(disk_arg.join("blocks")).unwrap();
        blocks.filter(|f| !f.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count()
    };
    for _ in 0..100 {
        if on_disk() == 7 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(on_disk(), 7);
    // One daemon per disk cache: a second mount of it is refused, and says why.
    let second = tempfile::tempdir().unwrap();
    let out = server
        .xosfs()
        .arg("bucket")
        .arg(second.path())
        .args(["--foreground", "--cache-dir"])
        .arg(second.path().join("cache"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another xosfs"), "{stderr}");
    drop(m);

    let m = server.mount(&args);
    server.server.stats().reset();
    assert_eq!(sha256(&std::fs::read(m.join("film.mkv")).unwrap()), sha256(&data));
    assert_eq!(server.server.stats().count("GetObject"), 0, "{:?}", server.server.stats().get_ranges());
}
