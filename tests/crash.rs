//! Nothing written is lost when the daemon dies: it is really killed (SIGKILL) with
//! uploads pending, mid-stream, and right after fsync; the next mount with the same cache
//! directory settles what the journal holds. Also: write-back uploads outlast a store
//! outage, and two mounts appending to one file never lose an append silently.

mod common;

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, BUCKET};
use xosfs_testserver::{pseudo_random_bytes, FaultAction, FaultRule};

/// Makes every request of `ops` fail with 503 until the faults are cleared.
fn refuse(server: &Server, ops: &[&str]) {
    for op in ops {
        server.server.faults().add(FaultRule {
            op: op.to_string(),
            key_contains: None,
            action: FaultAction::Error { status: 503 },
            remaining: None,
        });
    }
}

/// Waits until every key is stored (uploads run in the background).
fn wait_stored(server: &Server, keys: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stored = server.keys();
        let missing: Vec<&String> = keys.iter().filter(|k| !stored.contains(k)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "not stored within {within:?}: {missing:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unfinished_uploads(server: &Server) -> usize {
    let out = server.block_on(server.client.list_multipart_uploads().bucket(BUCKET).send()).unwrap();
    out.uploads().len()
}

fn metadata(server: &Server, key: &str) -> std::collections::HashMap<String, String> {
    let out = server.block_on(server.client.head_object().bucket(BUCKET).key(key).send()).unwrap();
    out.metadata().cloned().unwrap_or_default()
}

/// `xosfs recover ARGS --cache-dir CACHE`, with the server's credentials; (success, stdout).
fn recover(server: &Server, cache: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xosfs"))
        .env("AWS_ACCESS_KEY_ID", server.server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.server.secret_key())
        .arg("recover")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
}

/// close(2) with its result (dropping a File ignores it).
fn close(file: std::fs::File) -> std::io::Result<()> {
    // SAFETY: the descriptor is ours and closed exactly once.
    match unsafe { libc::close(file.into_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[test]
fn kill_9_with_write_back_uploads_pending_then_the_next_mount_stores_every_file() {
    let server = Server::memory();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("cache");
    let mut mount = server.mount_with_cache(&cache, &["--write-back", "--part-size", "5M"]);
    std::fs::create_dir(mount.join("small")).unwrap();
    // The store accepts parts but stores no object until the daemon is dead.
    refuse(&server, &["PutObject", "CompleteMultipartUpload"]);
    let mut expected = Vec::new();
    for i in 0..20 {
        let key = format!("small/f{i:02}");
        let data = pseudo_random_bytes(4096 + i, i as u64);
        let mut f = std::fs::File::create(mount.join(&key)).unwrap();
        f.write_all(&data).unwrap();
        // Attributes set while open go with the upload.
        if i == 0 {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if i == 1 {
            f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000)).unwrap();
        }
        close(f).unwrap();
        expected.push((key, data));
    }
    let big = pseudo_random_bytes(13 << 20, 99);
    let mut f = std::fs::File::create(mount.join("big.bin")).unwrap();
    f.write_all(&big).unwrap();
    close(f).unwrap();
    expected.push(("big.bin".to_string(), big));
    // Every close returned; this mount shows the files while their uploads wait.
    assert!(std::fs::read(mount.join("small/f05")).unwrap() == expected[5].1);
    mount.kill();
    let keys: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    assert!(server.keys().iter().all(|k| !keys.contains(k)), "nothing was stored before the kill");

    server.server.faults().clear();
    let mut again = server.mount_with_cache(&cache, &[]);
    wait_stored(&server, &keys, Duration::from_secs(60));
    for (key, data) in &expected {
        assert!(server.stored(key).as_deref() == Some(data.as_slice()), "{key} differs");
    }
    // Recovered entries are emptied and kept for new files while the daemon runs; it
    // removes them when it ends.
    std::fs::write(again.join("after"), b"after").unwrap();
    assert!(again.stop().success(), "{}", again.log());
    let left: Vec<String> = std::fs::read_dir(cache.join("writes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["reserve"], "the journal is empty once the daemon ends");
    assert_eq!(metadata(&server, "small/f00").get("mode").map(String::as_str), Some("33152"));
    assert_eq!(metadata(&server, "small/f01").get("mtime").map(String::as_str), Some("1500000000"));
    assert_eq!(unfinished_uploads(&server), 0, "the dead daemon's upload was aborted");
    assert!(again.log().contains("recovered"), "{}", again.log());
    let (ok, listing) = recover(&server, &cache, &["--list"]);
    assert!(ok && listing.contains("no kept files"), "{listing}");
}

#[test]
fn kill_9_mid_stream_keeps_the_old_object_and_the_partial_file_for_recover() {
    let server = Server::memory();
    server.put("video.mp4", b"the old video".to_vec());
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("cache");
    let mut mount = server.mount_with_cache(&cache, &["--part-size", "5M"]);
    let path = mount.join("video.mp4");
    // A writer that streams 12 MiB over the file and keeps it open.
    // `exec sleep`: killing the shell then kills the process holding the file (a forked
    // sleep would outlive it, holding the test's output open).
    let script =
        format!("exec 3>'{}'; head -c {} /dev/zero | tr '\\0' 'v' >&3; exec sleep 600", path.display(), 12 << 20);
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 12 << 20 {
        assert!(Instant::now() < deadline, "the writer did not write 12 MiB");
        std::thread::sleep(Duration::from_millis(50));
    }
    mount.kill();
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(server.stored("video.mp4").as_deref(), Some(&b"the old video"[..]), "the old object is intact");
    let (ok, listing) = recover(&server, &cache, &["--list"]);
    assert!(ok && listing.contains("open") && listing.contains("bucket:video.mp4"), "{listing}");

    // The next mount neither publishes it nor leaves its upload behind.
    let again = server.mount_with_cache(&cache, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while unfinished_uploads(&server) > 0 {
        assert!(Instant::now() < deadline, "the interrupted upload was not aborted");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(again);
    assert_eq!(server.stored("video.mp4").as_deref(), Some(&b"the old video"[..]));
    let (ok, listing) = recover(&server, &cache, &["--list"]);
    assert!(ok && listing.contains("bucket:video.mp4"), "still kept: {listing}");

    // Published by hand, the partial file replaces the object it was opened over.
    let (ok, out) = recover(&server, &cache, &["--publish", "video.mp4"]);
    assert!(ok, "{out}");
    assert!(out.contains("published video.mp4"), "{out}");
    let stored = server.stored("video.mp4").unwrap();
    assert!(stored.len() == 12 << 20 && stored.iter().all(|&b| b == b'v'));
    let (ok, listing) = recover(&server, &cache, &["--list"]);
    assert!(ok && listing.contains("no kept files"), "{listing}");
}

#[test]
fn kill_9_right_after_fsync_finds_the_object_stored() {
    let server = Server::memory();
    let mut mount = server.mount(&[]);
    let data = pseudo_random_bytes(300_000, 3);
    let mut f = std::fs::File::create(mount.join("synced")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    mount.kill();
    drop(f);
    assert!(server.stored("synced").as_deref() == Some(data.as_slice()));
}

#[test]
fn write_back_uploads_pending_through_a_30_second_outage_all_land() {
    let server = Server::memory();
    let mount = server.mount(&["--write-back"]);
    refuse(&server, &["PutObject"]);
    let mut expected = Vec::new();
    for i in 0..10 {
        let key = format!("out{i}");
        let data = pseudo_random_bytes(1000 + i, 40 + i as u64);
        std::fs::write(mount.join(&key), &data).unwrap();
        expected.push((key, data));
    }
    // Closes returned at once; the files show here while the store is down.
    assert_eq!(std::fs::read(mount.join("out3")).unwrap(), expected[3].1);
    std::thread::sleep(Duration::from_secs(30));
    assert!(server.keys().iter().all(|k| !k.starts_with("out")));
    server.server.faults().clear();
    let keys: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    wait_stored(&server, &keys, Duration::from_secs(90));
    for (key, data) in &expected {
        assert!(server.stored(key).as_deref() == Some(data.as_slice()), "{key} differs");
    }
}

#[test]
fn two_mounts_appending_to_one_file_lose_no_append_silently() {
    let server = Server::memory();
    server.put("shared.log", Vec::new());
    let (a, b) = (server.mount(&[]), server.mount(&[]));
    let append_all = |mount: &common::Mount, who: char| {
        let path = mount.join("shared.log");
        (0..20)
            .map(|i| {
                let line = format!("{who}{i:02}\n");
                let step =
                    |what: &'static str| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
                let result = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(step("open"))
                    .and_then(|mut f| f.write_all(line.as_bytes()).map(|()| f).map_err(step("write")))
                    .and_then(|f| close(f).map_err(step("close")));
                (line, result.err().map(|e| e.to_string()))
            })
            .collect::<Vec<_>>()
    };
    let (from_a, from_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| append_all(&a, 'a'));
        let tb = s.spawn(|| append_all(&b, 'b'));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let log = String::from_utf8(server.stored("shared.log").unwrap()).unwrap();
    let conflicts: Vec<String> = server
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("shared.log.conflict-"))
        .map(|k| String::from_utf8(server.stored(&k).unwrap()).unwrap())
        .collect();
    let mut lost_but_reported = 0;
    for (line, refused) in from_a.iter().chain(&from_b) {
        if refused.is_none() {
            assert!(log.contains(line.as_str()), "{line:?} was acknowledged but is not in the log:\n{log}");
        } else if !log.contains(line.as_str()) {
            assert!(
                conflicts.iter().any(|c| c.ends_with(line.as_str())),
                "{line:?} was refused ({refused:?}) but kept under no conflict name: {conflicts:?}"
            );
            lost_but_reported += 1;
        }
    }
    let in_log = log.lines().count();
    assert_eq!(in_log + lost_but_reported, 40, "every append is in the log or reported and kept:\n{log}");
    if lost_but_reported > 0 {
        assert!(a.log().contains("conflict") || b.log().contains("conflict"));
    }
}
