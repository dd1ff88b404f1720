//! What programs rely on, through a real mount over HTTP: an overwrite keeps the old object
//! until the new data is complete, a file just written is found after the kernel forgot
//! it, a rewrite keeps what the object carried, throttling is ridden out, and a failure
//! is logged so that it can be acted on.

mod common;

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, BUCKET};
use xosfs_testserver::{FaultAction, FaultRule};

fn setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn getxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn drop_kernel_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop the kernel's dentries and inodes (needs root)");
}

#[test]
fn a_shell_redirect_keeps_the_old_object_until_the_command_is_done() {
    let server = Server::memory();
    server.put("report.txt", "the old report\n");
    let m = server.mount(&[]);
    let target = m.join("report.txt");
    // The shell opens with O_TRUNC, dup2s and closes the original (a FLUSH) before the
    // command has written anything.
    let mut slow = Command::new("sh")
        .arg("-c")
        .arg(format!("(sleep 2; echo the new report) > '{}'", target.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(server.stored("report.txt").unwrap(), b"the old report\n", "the object was replaced before the data");
    assert!(slow.wait().unwrap().success());
    assert_eq!(server.stored("report.txt").unwrap(), b"the new report\n");
    assert_eq!(std::fs::read(&target).unwrap(), b"the new report\n");
}

#[test]
fn a_truncating_open_with_nothing_written_still_empties_the_file_at_its_release() {
    let server = Server::memory();
    server.put("log", "old lines\n");
    let m = server.mount(&[]);
    let status = Command::new("sh").arg("-c").arg(format!(": > '{}'", m.join("log").display())).status().unwrap();
    assert!(status.success());
    // The kernel sends the release after close(2) has returned: the store follows a
    // moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stored("log").unwrap() != b"" {
        assert!(Instant::now() < deadline, "the truncation never reached the store");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(m.join("log")).unwrap(), b"");
}

#[test]
fn a_file_just_written_is_found_after_the_kernel_forgot_it() {
    let server = Server::memory();
    // A negative TTL longer than the test: only a stale negative entry could hide the file.
    let m = server.mount(&["--negative-ttl", "600", "--attr-ttl", "600"]);
    let f = m.join("built.o");
    assert!(!f.exists(), "check-then-create: the name is missing first");
    std::fs::write(&f, b"object code").unwrap();
    drop_kernel_caches();
    assert_eq!(std::fs::read(&f).unwrap(), b"object code");
    // A rename onto a name found missing is the same case.
    let g = m.join("renamed.o");
    assert!(!g.exists());
    std::fs::rename(&f, &g).unwrap();
    drop_kernel_caches();
    assert_eq!(std::fs::read(&g).unwrap(), b"object code");
}

#[test]
fn rewriting_a_file_keeps_its_metadata_xattrs_and_chosen_content_type() {
    let server = Server::memory();
    server.put_with_meta("a.jpg", "jpeg bytes", &[("camera", "x100"), ("mode", "33188")]);
    let m = server.mount(&[]);
    let photo = m.join("a.jpg");
    setxattr(&photo, "user.rating", b"5").unwrap();
    setxattr(&photo, "user.xos.content_type", b"image/webp").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&photo).unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    assert_eq!(server.stored("a.jpg").unwrap(), b"jpeg bytes and more");
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("a.jpg").send()).unwrap();
    assert_eq!(head.content_type(), Some("image/webp"));
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("camera").map(String::as_str), Some("x100"), "another tool's metadata is kept");
    assert_eq!(getxattr(&photo, "user.rating").unwrap(), b"5");
    // The same through O_TRUNC (an editor's save).
    std::fs::write(&photo, b"new jpeg").unwrap();
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("a.jpg").send()).unwrap();
    assert_eq!(head.content_type(), Some("image/webp"));
    assert_eq!(head.metadata().and_then(|m| m.get("camera")).map(String::as_str), Some("x100"));
    assert_eq!(getxattr(&photo, "user.rating").unwrap(), b"5");
}

#[test]
fn a_write_rides_out_throttling_and_a_failure_is_logged_with_its_context() {
    let server = Server::memory();
    let m = server.mount(&[]);
    // Four 503 SlowDown answers in a row: retried with backoff, invisible to the writer.
    server.server.faults().add(FaultRule {
        op: "PutObject".into(),
        key_contains: Some("throttled".into()),
        action: FaultAction::Error { status: 503 },
        remaining: Some(4),
    });
    std::fs::write(m.join("throttled.bin"), b"made it").unwrap();
    assert_eq!(server.stored("throttled.bin").unwrap(), b"made it");
    // A refusal is not retried: the writer gets an error, the log says what and where.
    server.server.faults().add(FaultRule {
        op: "PutObject".into(),
        key_contains: Some("refused".into()),
        action: FaultAction::Error { status: 403 },
        remaining: None,
    });
    let started = Instant::now();
    let mut f = std::fs::File::create(m.join("refused.bin")).unwrap();
    f.write_all(b"no").unwrap();
    // close(2) reports it (std's File drop would ignore it).
    // SAFETY: the descriptor is ours, taken out of the File, and closed once.
    let closed = unsafe { libc::close(std::os::fd::IntoRawFd::into_raw_fd(f)) };
    assert_eq!((closed, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EIO)));
    assert!(started.elapsed() < Duration::from_secs(5), "a 403 is answered at once, not retried");
    assert_eq!(server.stored("refused.bin"), None);
    let log = m.log();
    let line = log.lines().find(|l| l.contains("upload failed")).expect("the failure is logged");
    for part in ["PutObject", "refused.bin", "HTTP 403", "AccessDenied", "request id"] {
        assert!(line.contains(part), "the log line names {part}: {line}");
    }
}

#[test]
fn stopping_the_daemon_lets_closes_finish_their_uploads() {
    let server = Server::memory();
    let mut m = server.mount(&[]);
    // `touch` of a new file stores it at release, which the kernel sends without waiting
    // for the answer; the store takes its time.
    server.server.faults().add(FaultRule {
        op: "PutObject".into(),
        key_contains: Some("late".into()),
        action: FaultAction::Delay(Duration::from_secs(2)),
        remaining: None,
    });
    assert!(Command::new("touch").arg(m.join("late")).status().unwrap().success());
    let status = m.stop();
    assert!(status.success(), "{}", m.log());
    assert_eq!(server.stored("late"), Some(Vec::new()), "the close finished before the daemon exited");
}

#[test]
fn cp_a_into_the_mount_keeps_user_xattrs() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let src = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let photo = src.path().join("photo.jpg");
    std::fs::write(&photo, b"jpeg bytes").unwrap();
    setxattr(&photo, "user.camera", b"x100").expect("the build directory's filesystem keeps user xattrs");
    // cp sets the xattrs on its copy while the copy is still open for writing.
    let out = Command::new("cp").arg("-a").arg(&photo).arg(m.join("photo.jpg")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "cp -a: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(getxattr(&m.join("photo.jpg"), "user.camera").unwrap(), b"x100");
    assert_eq!(server.stored("photo.jpg").unwrap(), b"jpeg bytes");
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("photo.jpg").send()).unwrap();
    assert!(head.metadata().unwrap().contains_key("xattr"), "the xattr is stored with the object");
}

#[test]
fn chmod_and_touch_keep_the_times_s3fs_wrote() {
    let server = Server::memory();
    let meta = [("mode", "33188"), ("mtime", "1600000000.123456789"), ("atime", "1600000001"), ("ctime", "1600000002")];
    server.put_with_meta("notes.txt", "text", &meta);
    let m = server.mount(&[]);
    let f = m.join("notes.txt");
    let md = std::fs::metadata(&f).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789), "read exactly");
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("notes.txt").send()).unwrap();
    let stored = head.metadata().unwrap();
    assert_eq!(stored["mtime"], "1600000000.123456789", "chmod is not a write");
    assert_eq!(stored["atime"], "1600000001", "the atime s3fs wrote is kept");
    assert!(stored["ctime"].as_str() > "1600000002", "chmod is a change: {}", stored["ctime"]);
    // touch -m with a fractional time is stored exactly.
    assert!(Command::new("touch").args(["-m", "-d", "@1450000000.25"]).arg(&f).status().unwrap().success());
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("notes.txt").send()).unwrap();
    let stored = head.metadata().unwrap();
    assert_eq!(stored["mtime"], "1450000000.250000000");
    assert_eq!(stored["atime"], "1600000001", "touch -m leaves the atime");
}
