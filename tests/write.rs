//! Writing: streamed multipart uploads, single PUTs, every way programs change files,
//! metadata on stored objects, and failures that must reach the writer and lose nothing.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use common::{sha256, Server, BUCKET};
use rand::{Rng, SeedableRng};
use xosfs_testserver::pseudo_random_bytes as random_bytes;
use xosfs_testserver::{FaultAction, FaultRule};

fn open_uploads(server: &Server) -> usize {
    let out = server.block_on(server.client.list_multipart_uploads().bucket(BUCKET).send()).unwrap();
    out.uploads().len()
}

#[test]
fn large_streamed_write_uses_parallel_parts_and_matches() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let data = random_bytes(300 << 20, 300);
    {
        let mut f = std::fs::File::create(m.join("video.mp4")).unwrap();
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        // Parts went up while the file was still being written.
        let streamed = server.server.stats().count("UploadPart");
        assert!(streamed >= 10, "parts should stream before close, {streamed} did");
        assert!(server.stored("video.mp4").is_none(), "the object must not appear before close");
    }
    let stats = server.server.stats();
    assert_eq!(stats.count("CreateMultipartUpload"), 1);
    assert_eq!(stats.count("CompleteMultipartUpload"), 1);
    assert!(stats.count("UploadPart") >= 37, "300 MiB in 8 MiB parts");
    assert!(stats.max_in_flight("UploadPart") >= 2, "parts were uploaded one at a time");
    assert_eq!(sha256(&server.stored("video.mp4").unwrap()), sha256(&data));
    assert_eq!(sha256(&std::fs::read(m.join("video.mp4")).unwrap()), sha256(&data));
    assert_eq!(open_uploads(&server), 0);
}

#[test]
fn small_file_is_one_put_with_content_type_and_posix_metadata() {
    let server = Server::memory();
    let m = server.mount(&[]);
    std::fs::write(m.join("photo.png"), b"not really a png").unwrap();
    assert_eq!(server.server.stats().count("PutObject"), 1);
    assert_eq!(server.server.stats().count("CreateMultipartUpload"), 0);
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("photo.png").send()).unwrap();
    assert_eq!(head.content_type(), Some("image/png"));
    let meta = head.metadata().unwrap();
    let mode: u32 = meta["mode"].parse().unwrap();
    assert_eq!(mode & libc::S_IFMT, libc::S_IFREG);
    // SAFETY: getuid cannot fail.
    assert_eq!(meta["uid"], unsafe { libc::getuid() }.to_string());
    assert!(meta.contains_key("gid") && xosfs::times::parse_time(&meta["mtime"]).is_some(), "{meta:?}");
    assert_eq!(server.stored("photo.png").unwrap(), b"not really a png");
}

#[test]
fn overwrite_append_and_truncate() {
    let server = Server::memory();
    server.put("doc.txt", "hello world");
    let m = server.mount(&[]);
    let p = m.join("doc.txt");

    std::fs::write(&p, "replaced").unwrap();
    assert_eq!(server.stored("doc.txt").unwrap(), b"replaced");

    OpenOptions::new().append(true).open(&p).unwrap().write_all(b" and appended").unwrap();
    assert_eq!(server.stored("doc.txt").unwrap(), b"replaced and appended");
    assert_eq!(std::fs::read(&p).unwrap(), b"replaced and appended");

    OpenOptions::new().write(true).open(&p).unwrap().set_len(8).unwrap();
    assert_eq!(server.stored("doc.txt").unwrap(), b"replaced");
    OpenOptions::new().write(true).open(&p).unwrap().set_len(12).unwrap();
    assert_eq!(server.stored("doc.txt").unwrap(), b"replaced\0\0\0\0");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 12);

    // truncate(2) on a path, with no open file.
    let status = std::process::Command::new("truncate").args(["-s", "3"]).arg(&p).status().unwrap();
    assert!(status.success());
    assert_eq!(server.stored("doc.txt").unwrap(), b"rep");
}

#[test]
fn fallocate_extends_the_file_and_refuses_what_would_rewrite_it() {
    use std::os::fd::AsRawFd;
    let server = Server::memory();
    server.put("log.bin", b"0123456789".to_vec());
    let m = server.mount(&[]);
    let p = m.join("log.bin");
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: fallocate(2) and posix_fallocate(3) on a descriptor this test owns.
    let (keep, inside, grow, punch) = unsafe {
        (
            libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20),
            libc::posix_fallocate(fd, 2, 4),
            libc::posix_fallocate(fd, 8, 8),
            libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 4),
        )
    };
    let punch_errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((keep, inside, grow), (0, 0, 0), "fallocate and posix_fallocate succeed");
    assert_eq!((punch, punch_errno), (-1, Some(libc::EOPNOTSUPP)), "punching a hole is refused");
    assert_eq!(f.metadata().unwrap().len(), 16, "allocating past the end makes the file longer, and only that");
    drop(f);
    assert_eq!(server.stored("log.bin").unwrap(), b"0123456789\0\0\0\0\0\0");
    assert!(!m.log().contains("Not Implemented"), "{}", m.log());
}

#[test]
fn probes_of_files_and_directories_get_a_local_disks_answers() {
    use std::os::fd::AsRawFd;
    let server = Server::memory();
    server.put("dir/data.bin", vec![7u8; 5000]);
    let m = server.mount(&[]);
    let f = std::fs::File::open(m.join("dir/data.bin")).unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: isatty(3) and lseek(2) on a descriptor this test owns.
    let tty = unsafe { libc::isatty(fd) };
    assert_eq!((tty, std::io::Error::last_os_error().raw_os_error()), (0, Some(libc::ENOTTY)), "a file is no terminal");
    // SAFETY: as above.
    let (data, hole, past) = unsafe {
        (
            libc::lseek(fd, 10, libc::SEEK_DATA),
            libc::lseek(fd, 0, libc::SEEK_HOLE),
            libc::lseek(fd, 5000, libc::SEEK_DATA),
        )
    };
    let past_errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((data, hole), (10, 5000), "the whole file is data, its end the only hole");
    assert_eq!((past, past_errno), (-1, Some(libc::ENXIO)), "no data past the end");
    std::fs::File::open(m.join("dir")).unwrap().sync_all().expect("fsync of a directory");
    assert!(!m.log().contains("Not Implemented"), "{}", m.log());
}

#[test]
fn random_writes_and_rdwr_edits_of_an_existing_large_object() {
    let server = Server::memory();
    let mut expected = random_bytes(40 << 20, 20);
    server.put("data.bin", expected.clone());
    let m = server.mount(&[]);
    {
        let f = OpenOptions::new().read(true).write(true).open(m.join("data.bin")).unwrap();
        for (offset, len) in [(5u64, 100usize), (9 << 20, 3 << 20), ((40 << 20) - 10, 30)] {
            let patch = random_bytes(len, offset + 1);
            f.write_all_at(&patch, offset).unwrap();
            let end = offset as usize + len;
            if end > expected.len() {
                expected.resize(end, 0);
            }
            expected[offset as usize..end].copy_from_slice(&patch);
            // Read while writing sees the written data.
            let mut back = vec![0u8; len];
            f.read_exact_at(&mut back, offset).unwrap();
            assert_eq!(back, patch);
        }
        let mut head = vec![0u8; 200];
        f.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, expected[..200]);
    }
    assert_eq!(sha256(&server.stored("data.bin").unwrap()), sha256(&expected));
    // Unchanged 8 MiB ranges were copied on the server, not sent again.
    assert!(server.server.stats().count("UploadPartCopy") >= 1, "no server-side part copy");
}

#[test]
fn read_while_writing_a_new_file_and_fsync_makes_it_visible() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(m.join("log.txt")).unwrap();
    f.write_all(b"first line\n").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "first line\n");
    assert_eq!(std::fs::metadata(m.join("log.txt")).unwrap().len(), 11);
    assert!(server.stored("log.txt").is_none(), "not visible before fsync or close");
    f.sync_all().unwrap();
    assert_eq!(server.stored("log.txt").unwrap(), b"first line\n");
    f.write_all(b"second\n").unwrap();
    drop(f);
    assert_eq!(server.stored("log.txt").unwrap(), b"first line\nsecond\n");
}

#[test]
fn randomized_operations_match_a_shadow_copy() {
    let server = Server::memory();
    server.put("fsx.bin", random_bytes(3 << 20, 7));
    let m = server.mount(&["--part-size", "5M"]);
    let mut shadow = random_bytes(3 << 20, 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4242);
    let path = m.join("fsx.bin");
    for round in 0..4 {
        let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for op in 0..500 {
            let max = 12 << 20;
            match rng.random_range(0..10) {
                0..=4 => {
                    let off = rng.random_range(0..max) as usize;
                    let len = rng.random_range(1..(256 << 10));
                    let data = random_bytes(len, (round * 1000 + op) as u64);
                    f.write_all_at(&data, off as u64).unwrap();
                    if off + len > shadow.len() {
                        shadow.resize(off + len, 0);
                    }
                    shadow[off..off + len].copy_from_slice(&data);
                }
                5 => {
                    let len = rng.random_range(0..max) as usize;
                    f.set_len(len as u64).unwrap();
                    shadow.resize(len, 0);
                }
                _ => {
                    let off = rng.random_range(0..max) as usize;
                    let len = rng.random_range(1..(512 << 10));
                    let mut buf = vec![0u8; len];
                    let mut got = 0;
                    while got < len {
                        let n = f.read_at(&mut buf[got..], (off + got) as u64).unwrap();
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    let want_end = (off + len).min(shadow.len());
                    let want = if off < shadow.len() { &shadow[off..want_end] } else { &[][..] };
                    assert_eq!(&buf[..got], want, "round {round} op {op}: read {len} at {off}");
                }
            }
        }
        assert_eq!(f.metadata().unwrap().len(), shadow.len() as u64);
        drop(f);
        assert_eq!(sha256(&server.stored("fsx.bin").unwrap()), sha256(&shadow), "round {round}");
    }
}

#[test]
fn failed_part_upload_gives_eio_at_close_and_leaves_nothing_behind() {
    let server = Server::memory();
    server.put("keep.bin", "the old version");
    let m = server.mount(&["--part-size", "5M"]);
    server.server.faults().add(FaultRule {
        op: "UploadPart".into(),
        key_contains: Some("keep.bin".into()),
        action: FaultAction::Error { status: 500 },
        remaining: None,
    });
    let data = random_bytes(23 << 20, 5);
    let mut f = std::fs::File::create(m.join("keep.bin")).unwrap();
    let mut write_err = None;
    for chunk in data.chunks(1 << 20) {
        if let Err(e) = f.write_all(chunk) {
            write_err = Some(e);
            break;
        }
    }
    let close_err = f.sync_all().err();
    drop(f);
    let err = write_err.or(close_err).expect("the failure must reach the writer");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(server.stored("keep.bin").unwrap(), b"the old version", "the old object was damaged");
    assert_eq!(open_uploads(&server), 0, "an unfinished multipart upload was left behind");
    let log = m.log();
    assert!(log.contains("upload failed") && log.contains("staging file"), "{log}");
}

#[test]
fn failed_single_put_gives_eio_at_close() {
    let server = Server::memory();
    let m = server.mount(&[]);
    server.server.faults().add(FaultRule {
        op: "PutObject".into(),
        key_contains: Some("small.txt".into()),
        action: FaultAction::Error { status: 403 },
        remaining: None,
    });
    let mut f = std::fs::File::create(m.join("small.txt")).unwrap();
    f.write_all(b"data").unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(server.stored("small.txt").is_none());
}

#[test]
fn chmod_and_touch_store_s3fs_metadata() {
    let server = Server::memory();
    server.put("script.sh", "#!/bin/sh\n");
    let m = server.mount(&[]);
    std::fs::set_permissions(m.join("script.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let status = std::process::Command::new("touch")
        .args(["-d", "2020-01-02 03:04:05Z"])
        .arg(m.join("script.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("script.sh").send()).unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta["mode"].parse::<u32>().unwrap() & 0o7777, 0o750);
    assert_eq!(meta["mtime"], "1577934245");
    assert_eq!(server.stored("script.sh").unwrap(), b"#!/bin/sh\n");
    let md = std::fs::metadata(m.join("script.sh")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    assert_eq!(md.mtime(), 1577934245);
}

/// Runs `script` with sh as user and group 65534, no supplementary groups.
fn as_nobody(script: &str, arg: &std::path::Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script, "sh"])
        .arg(arg)
        .status()
        .unwrap()
        .success()
}

/// The stored and the shown permission bits of `key`. Shown: what `stat -c %a` asks for,
/// the mode alone, which the kernel answers from its cache unless told it is out of date
/// (a write makes it ask again for sizes and times, not for the mode).
fn stored_and_shown_mode(server: &Server, m: &common::Mount, key: &str) -> (u32, u32) {
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key(key).send()).unwrap();
    let stored = head.metadata().unwrap()["mode"].parse::<u32>().unwrap() & 0o7777;
    let out = std::process::Command::new("stat").args(["-c", "%a"]).arg(m.join(key)).output().unwrap();
    let shown = u32::from_str_radix(String::from_utf8(out.stdout).unwrap().trim(), 8).unwrap();
    (stored, shown)
}

#[test]
fn set_id_bits_are_cleared_by_unprivileged_writes_and_truncates_and_by_chown() {
    let server = Server::memory();
    // Others may write the files. The attribute TTL is the default: the mode shown is the
    // kernel's cached one, which must not keep bits that were cleared (a set-ID file run
    // right after an unprivileged write would run set-ID).
    let m = server.mount(&["--allow-other"]);
    let set = |key: &str, mode: u32| {
        std::fs::write(m.join(key), "data\n").unwrap();
        std::fs::set_permissions(m.join(key), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // A write by a process without CAP_FSETID clears set-user-ID, and set-group-ID with
    // group execute.
    set("tool", 0o6777);
    assert!(as_nobody("printf more >> \"$1\"", &m.join("tool")));
    assert_eq!(stored_and_shown_mode(&server, &m, "tool"), (0o777, 0o777));
    assert_eq!(server.stored("tool").unwrap(), b"data\nmore");
    // Set-group-ID without group execute (mandatory locking) stays.
    set("locked", 0o2766);
    assert!(as_nobody("printf more >> \"$1\"", &m.join("locked")));
    assert_eq!(stored_and_shown_mode(&server, &m, "locked"), (0o2766, 0o2766));
    // A truncating open, and truncate(1), by such a process.
    set("opened", 0o4777);
    assert!(as_nobody("printf new > \"$1\"", &m.join("opened")));
    assert_eq!(stored_and_shown_mode(&server, &m, "opened"), (0o777, 0o777));
    set("cut", 0o4777);
    assert!(as_nobody("truncate -s 2 \"$1\"", &m.join("cut")));
    assert_eq!(stored_and_shown_mode(&server, &m, "cut"), (0o777, 0o777));
    // root keeps them when writing (CAP_FSETID); chown clears them, even by root.
    set("rooted", 0o6755);
    std::fs::OpenOptions::new().append(true).open(m.join("rooted")).unwrap().write_all(b"more").unwrap();
    assert_eq!(stored_and_shown_mode(&server, &m, "rooted"), (0o6755, 0o6755));
    std::os::unix::fs::chown(m.join("rooted"), Some(1000), None).unwrap();
    assert_eq!(stored_and_shown_mode(&server, &m, "rooted"), (0o755, 0o755));
}

#[test]
fn tools_write_through_the_mount() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let (_src, tarball) = common::local_tree();
    // dd with a block size that does not divide the part size.
    let dd = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=777k", "count=20", "status=none"])
        .arg(format!("of={}", m.join("zeros.bin").display()))
        .status()
        .unwrap();
    assert!(dd.success());
    assert_eq!(std::fs::metadata(m.join("zeros.bin")).unwrap().len(), 777 * 1024 * 20);
    assert_eq!(server.stored("zeros.bin").unwrap().len(), 777 * 1024 * 20);
    // Shell redirects.
    let sh = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo one > r.txt && echo two >> r.txt")
        .current_dir(m.path())
        .status()
        .unwrap();
    assert!(sh.success());
    assert_eq!(server.stored("r.txt").unwrap(), b"one\ntwo\n");
    let cp = std::process::Command::new("cp").arg(&tarball).arg(m.join("t.tar")).status().unwrap();
    assert!(cp.success());
    assert_eq!(server.stored("t.tar").unwrap(), std::fs::read(&tarball).unwrap());
}

#[test]
fn a_child_process_closing_an_inherited_descriptor_does_not_upload() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let mut f = std::fs::File::create(m.join("partial.txt")).unwrap();
    f.write_all(b"first half, ").unwrap();
    // fork+exec copies the descriptor table; exec closes the copy, which sends FLUSH.
    assert!(std::process::Command::new("true").status().unwrap().success());
    assert!(server.stored("partial.txt").is_none(), "a half-written file was uploaded by the child's close");
    f.write_all(b"second half").unwrap();
    drop(f);
    assert_eq!(server.stored("partial.txt").unwrap(), b"first half, second half");
}
