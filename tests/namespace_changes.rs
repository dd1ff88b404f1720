//! Changing the namespace: mkdir, rmdir, unlink, rename of files and directories (with
//! server-side copies), hard links, and the tools that rely on them (mv, cp -r, rsync).

mod common;

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::{ls, sha256, Server, BUCKET};
use xosfs_testserver::{pseudo_random_bytes, FaultAction, FaultRule};

fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let (a, b) = (CString::new(from.as_os_str().as_bytes()).unwrap(), CString::new(to.as_os_str().as_bytes()).unwrap());
    // SAFETY: two valid NUL-terminated paths; the call keeps neither.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn mkdir_rmdir_unlink_and_their_errors() {
    let server = Server::memory();
    server.put("full/file", "x");
    // No caching, so the emptied implicit directory is seen gone at once.
    let m = server.mount(&["--attr-ttl", "0"]);
    std::fs::create_dir(m.join("made")).unwrap();
    assert!(server.keys().contains(&"made/".to_string()), "mkdir writes a marker");
    assert!(std::fs::metadata(m.join("made")).unwrap().is_dir());
    assert_eq!(std::fs::create_dir(m.join("made")).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    assert_eq!(std::fs::remove_dir(m.join("full")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    assert_eq!(std::fs::remove_dir(m.join("full/file")).unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
    assert_eq!(std::fs::remove_file(m.join("made")).unwrap_err().raw_os_error(), Some(libc::EISDIR));
    assert_eq!(std::fs::remove_file(m.join("nope")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    std::fs::remove_dir(m.join("made")).unwrap();
    assert!(!server.keys().contains(&"made/".to_string()));
    std::fs::remove_file(m.join("full/file")).unwrap();
    // An implicit directory with no marker goes away with its last file.
    assert!(server.keys().is_empty());
    assert!(!m.join("full").exists());
    // Hard links cannot exist for objects.
    std::fs::write(m.join("a"), "a").unwrap();
    assert_eq!(std::fs::hard_link(m.join("a"), m.join("b")).unwrap_err().raw_os_error(), Some(libc::EPERM));
}

#[test]
fn rename_file_keeps_metadata_and_replaces_the_target() {
    let server = Server::memory();
    server.put("old.tmp", "new content");
    server.put("target.png", "old content");
    let m = server.mount(&[]);
    std::fs::set_permissions(m.join("old.tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(m.join("old.tmp"), m.join("target.png")).unwrap();
    assert_eq!(server.stored("target.png").unwrap(), b"new content");
    assert!(server.stored("old.tmp").is_none());
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("target.png").send()).unwrap();
    assert_eq!(head.content_type(), Some("image/png"), "Content-Type follows the new name");
    assert_eq!(head.metadata().unwrap()["mode"].parse::<u32>().unwrap() & 0o777, 0o600, "metadata kept");
    assert_eq!(ls(m.path()), ["target.png"]);
    assert_eq!(std::fs::read(m.join("target.png")).unwrap(), b"new content");
}

#[test]
fn rename_flags_noreplace_and_exchange() {
    let server = Server::memory();
    server.put("a", "A");
    server.put("b", "B");
    let m = server.mount(&[]);
    let err = renameat2(&m.join("a"), &m.join("b"), libc::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    let err = renameat2(&m.join("a"), &m.join("b"), libc::RENAME_EXCHANGE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    renameat2(&m.join("a"), &m.join("c"), libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(server.stored("c").unwrap(), b"A");
    assert_eq!(server.stored("b").unwrap(), b"B");
}

#[test]
fn large_file_rename_uses_part_copies() {
    let server = Server::memory();
    let data = pseudo_random_bytes(12 << 20, 12);
    server.put("big.bin", data.clone());
    let m = server.mount(&["--copy-threshold", "5M"]);
    std::fs::rename(m.join("big.bin"), m.join("moved.bin")).unwrap();
    assert_eq!(server.server.stats().count("CopyObject"), 0);
    assert_eq!(server.server.stats().count("UploadPartCopy"), 3, "12 MiB in 5 MiB parts");
    assert_eq!(sha256(&server.stored("moved.bin").unwrap()), sha256(&data));
    assert!(server.stored("big.bin").is_none());
}

#[test]
fn rename_directory_moves_every_key_in_batches() {
    let server = Server::memory();
    server.put("src/", "");
    server.put("src/deep/x.txt", "x");
    server.put_many((0..1200).map(|i| (format!("src/many/f{i:04}"), vec![b'y'])).collect());
    let m = server.mount(&[]);
    let before = server.server.stats().count("DeleteObjects");
    std::fs::rename(m.join("src"), m.join("dst")).unwrap();
    let all = server.keys();
    assert_eq!(all.len(), 1202);
    assert!(
        all.iter().all(|k| k.starts_with("dst/")),
        "left behind: {:?}",
        all.iter().find(|k| !k.starts_with("dst/"))
    );
    assert!(server.server.stats().count("DeleteObjects") - before >= 2, "1,202 deletes need two batches");
    assert_eq!(std::fs::read_to_string(m.join("dst/deep/x.txt")).unwrap(), "x");
    assert_eq!(ls(&m.join("dst/many")).len(), 1200);
    assert!(!m.join("src").exists());
}

#[test]
fn failed_directory_rename_loses_nothing() {
    let server = Server::memory();
    for i in 0..20 {
        server.put(&format!("dir/f{i:02}"), format!("{i}"));
    }
    let m = server.mount(&[]);
    server.server.faults().add(FaultRule {
        op: "CopyObject".into(),
        key_contains: Some("f13".into()),
        action: FaultAction::Error { status: 500 },
        remaining: None,
    });
    let err = std::fs::rename(m.join("dir"), m.join("elsewhere")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    for i in 0..20 {
        assert_eq!(server.stored(&format!("dir/f{i:02}")).unwrap(), format!("{i}").as_bytes(), "dir/f{i:02} lost");
    }
    assert_eq!(ls(&m.join("dir")).len(), 20);
}

#[test]
fn tools_that_rename_work() {
    let server = Server::memory();
    let m = server.mount(&[]);
    let (src, tarball) = common::local_tree();
    // cp -r makes directories and files.
    assert!(std::process::Command::new("cp")
        .arg("-r")
        .arg(src.path().join("tree"))
        .arg(m.join("copy"))
        .status()
        .unwrap()
        .success());
    assert_eq!(server.stored("copy/sub/b.bin").unwrap(), std::fs::read(src.path().join("tree/sub/b.bin")).unwrap());
    // rsync writes a temporary file and renames it into place, then sets times and modes.
    let rsync = std::process::Command::new("rsync")
        .arg("-a")
        .arg(src.path().join("tree/"))
        .arg(m.join("synced/"))
        .output()
        .unwrap();
    assert!(rsync.status.success(), "rsync: {}", String::from_utf8_lossy(&rsync.stderr));
    assert_eq!(server.stored("synced/a.txt").unwrap(), b"alpha");
    let again = std::process::Command::new("rsync")
        .args(["-a", "--checksum"])
        .arg(src.path().join("tree/"))
        .arg(m.join("synced/"))
        .output()
        .unwrap();
    assert!(again.status.success());
    // mv of a directory, then tar extraction.
    assert!(std::process::Command::new("mv").arg(m.join("copy")).arg(m.join("moved")).status().unwrap().success());
    assert_eq!(std::fs::read_to_string(m.join("moved/a.txt")).unwrap(), "alpha");
    let tar = std::process::Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(m.path()).output().unwrap();
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
    assert_eq!(server.stored("tree/a.txt").unwrap(), b"alpha");
    // Into the mount root itself, whose mode and times rsync sets too: the bucket's root
    // has no object, so they are kept for as long as the mount.
    let into_root = std::process::Command::new("rsync")
        .arg("-a")
        .arg(src.path().join("tree/"))
        .arg(format!("{}/", m.path().display()))
        .output()
        .unwrap();
    assert!(into_root.status.success(), "rsync: {}", String::from_utf8_lossy(&into_root.stderr));
    assert_eq!(server.stored("a.txt").unwrap(), b"alpha");
}

#[test]
fn a_file_that_loses_its_name_while_open_still_serves_its_descriptors() {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    let server = Server::memory();
    server.put("shared", "stored bytes");
    // Nothing cached by the kernel: every fstat below reaches the filesystem.
    let m = server.mount(&["--attr-ttl", "0"]);

    // tmpfile()'s fallback where O_TMPFILE is missing: create, unlink, use as scratch.
    let mut scratch =
        std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(m.join("scratch")).unwrap();
    scratch.write_all(b"first ").unwrap();
    std::fs::remove_file(m.join("scratch")).unwrap();
    let meta = scratch.metadata().unwrap();
    assert_eq!((meta.nlink(), meta.len()), (0, 6), "fstat of the unlinked file");
    scratch.write_all(b"second").unwrap();
    scratch.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    scratch.read_to_string(&mut back).unwrap();
    assert_eq!(back, "first second");
    assert_eq!(scratch.metadata().unwrap().len(), 12);
    drop(scratch);
    assert!(!server.keys().contains(&"scratch".to_string()), "an unlinked file is never stored");
    assert_eq!(std::fs::metadata(m.join("scratch")).unwrap_err().raw_os_error(), Some(libc::ENOENT));

    // Deleted in the store by someone else while open here for reading.
    let reader = std::fs::File::open(m.join("shared")).unwrap();
    server.block_on(server.client.delete_object().bucket(BUCKET).key("shared").send()).unwrap();
    let meta = reader.metadata().unwrap();
    assert_eq!((meta.nlink(), meta.len()), (0, 12), "fstat of the file deleted in the store");
    assert_eq!(std::fs::metadata(m.join("shared")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    // Nothing of it was read before, so its bytes are gone with it.
    let mut buf = Vec::new();
    assert_eq!((&reader).read_to_end(&mut buf).unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(reader);
}

#[test]
fn a_file_only_read_keeps_its_bytes_for_its_readers_when_unlinked_or_renamed_over_here() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    // The in-memory store answers a read of a replaced version with 412, as S3 does.
    let server = Server::memory();
    server.put("config", "old settings");
    server.put("log.1", "rotated away");
    let m = server.mount(&[]);
    let read_all = |mut f: &std::fs::File| {
        let mut s = String::new();
        f.read_to_string(&mut s).map(|_| s)
    };

    // An atomic save (write aside, rename over) while a program has the file open.
    let reader = std::fs::File::open(m.join("config")).unwrap();
    std::fs::write(m.join("config.new"), "new settings").unwrap();
    std::fs::rename(m.join("config.new"), m.join("config")).unwrap();
    assert_eq!(read_all(&reader).unwrap(), "old settings", "the open descriptor reads the file it opened");
    assert_eq!(std::fs::read_to_string(m.join("config")).unwrap(), "new settings");

    // Removed while open for reading, nothing of it read before.
    let rotated = std::fs::File::open(m.join("log.1")).unwrap();
    std::fs::remove_file(m.join("log.1")).unwrap();
    assert_eq!(rotated.metadata().unwrap().nlink(), 0);
    assert_eq!(read_all(&rotated).unwrap(), "rotated away");
    drop((reader, rotated));

    let mut keys = server.keys();
    keys.sort();
    assert_eq!(keys, ["config"], "nothing held for the readers is stored");
    assert_eq!(server.stored("config").unwrap(), b"new settings");
}

#[test]
fn a_directory_renamed_while_its_files_are_written_or_uploaded_moves_them_all() {
    let server = Server::memory();
    let m = server.mount(&["--write-back"]);
    std::fs::create_dir(m.join("album")).unwrap();
    // The uploads after these closes are still running when mv comes.
    server.server.faults().add(FaultRule {
        op: "PutObject".into(),
        key_contains: Some("album/".into()),
        action: FaultAction::Delay(Duration::from_millis(700)),
        remaining: Some(3),
    });
    for i in 0..3 {
        std::fs::write(m.join(&format!("album/{i}.jpg")), format!("photo {i}")).unwrap();
    }
    // A download still being written into it, as a local disk allows.
    let mut still_open = std::fs::File::create(m.join("album/part.jpg")).unwrap();
    still_open.write_all(b"first half, ").unwrap();
    std::fs::rename(m.join("album"), m.join("2026")).expect("files being written are no reason to refuse");
    still_open.write_all(b"second half").unwrap();
    drop(still_open);
    for i in 0..3 {
        assert_eq!(std::fs::read_to_string(m.join(&format!("2026/{i}.jpg"))).unwrap(), format!("photo {i}"));
        assert_eq!(server.stored(&format!("2026/{i}.jpg")).unwrap(), format!("photo {i}").as_bytes());
    }
    assert_eq!(std::fs::read_to_string(m.join("2026/part.jpg")).unwrap(), "first half, second half");
    // Unmounting waits for the uploads still queued.
    drop(m);
    assert_eq!(server.stored("2026/part.jpg").unwrap(), b"first half, second half");
    assert!(!server.keys().iter().any(|k| k.starts_with("album/")), "{:?}", server.keys());
}

#[test]
fn write_back_rm_rf_deletes_in_batches_and_what_is_made_again_stays() {
    let server = Server::fs();
    server.put_many((0..300).map(|i| (format!("tree/f{i:03}"), vec![b'x'; 10])).collect());
    server.put("keep/x", "old");
    let m = server.mount(&["--write-back"]);
    assert!(ls(&m.join("tree")).len() == 300);
    server.server.stats().reset();
    let rm = std::process::Command::new("rm").arg("-rf").arg(m.join("tree")).status().unwrap();
    assert!(rm.success());
    // rmdir waited for the deletes before it found the directory empty.
    assert!(server.keys().iter().all(|k| !k.starts_with("tree/")), "{:?}", server.keys());
    let stats = server.server.stats();
    assert_eq!(stats.count("DeleteObject"), 0, "no single deletes");
    assert!(stats.count("DeleteObjects") < 100, "{} DeleteObjects for 300 files", stats.count("DeleteObjects"));
    assert!(!m.join("tree").exists());

    // A file removed and made again under the same name at once is the new one.
    std::fs::remove_file(m.join("keep/x")).unwrap();
    std::fs::write(m.join("keep/x"), "new").unwrap();
    // fsync through a reader's descriptor waits for the write-back upload.
    std::fs::File::open(m.join("keep/x")).unwrap().sync_all().unwrap();
    assert_eq!(server.stored("keep/x").as_deref(), Some(&b"new"[..]));
    drop(m);
    assert_eq!(server.stored("keep/x").as_deref(), Some(&b"new"[..]), "the late delete took nothing");
}
