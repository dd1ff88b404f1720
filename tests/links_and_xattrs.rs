//! Symlinks and extended attributes, in s3fs's encodings so both tools read each other's.

mod common;

use std::path::Path;

use common::{getxattr, listxattr, removexattr, setxattr, Server, BUCKET};

/// S_IFLNK | 0777, as s3fs writes the mode of a symlink.
const SYMLINK_MODE: &str = "41471";

fn head_meta(server: &Server, key: &str) -> std::collections::HashMap<String, String> {
    let out = server.block_on(server.client.head_object().bucket(BUCKET).key(key).send()).unwrap();
    out.metadata().cloned().unwrap_or_default()
}

#[test]
fn symlinks_are_stored_as_s3fs_stores_them_and_read_back() {
    let server = Server::memory();
    server.put("data/song.flac", b"music".to_vec());
    // A symlink made by s3fs: its body is the target, its mode says S_IFLNK.
    server.put_with_meta("by-s3fs", "data/song.flac", &[("mode", SYMLINK_MODE)]);
    let mut m = server.mount(&[]);

    let made_by_s3fs = m.join("by-s3fs");
    assert!(std::fs::symlink_metadata(&made_by_s3fs).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&made_by_s3fs).unwrap(), Path::new("data/song.flac"));
    assert_eq!(std::fs::read(&made_by_s3fs).unwrap(), b"music");

    std::os::unix::fs::symlink("data/song.flac", m.join("latest")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", m.join("dangling")).unwrap();
    assert_eq!(std::fs::read(m.join("latest")).unwrap(), b"music");
    assert_eq!(std::fs::read_link(m.join("dangling")).unwrap(), Path::new("/nowhere/at/all"));
    assert_eq!(std::os::unix::fs::symlink("x", m.join("latest")).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    assert_eq!(server.stored("latest").unwrap(), b"data/song.flac");
    assert_eq!(head_meta(&server, "latest").get("mode").map(String::as_str), Some(SYMLINK_MODE));

    // Renamed and listed as a symlink; removing it leaves the target alone.
    std::fs::rename(m.join("latest"), m.join("current")).unwrap();
    assert_eq!(std::fs::read_link(m.join("current")).unwrap(), Path::new("data/song.flac"));
    let kinds: Vec<(String, bool)> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().unwrap().is_symlink()))
        .collect();
    assert!(kinds.contains(&("current".into(), true)), "{kinds:?}");
    std::fs::remove_file(m.join("dangling")).unwrap();
    assert!(server.stored("dangling").is_none());
    m.stop();

    // A fresh mount sees the same.
    let m = server.mount(&[]);
    assert_eq!(std::fs::read_link(m.join("current")).unwrap(), Path::new("data/song.flac"));
    assert_eq!(std::fs::read(m.join("data/song.flac")).unwrap(), b"music");
}

#[test]
fn user_xattrs_round_trip_in_s3fs_encoding_and_xos_views_show_the_object() {
    let server = Server::memory();
    server.put("photo.jpg", vec![7u8; 1000]);
    let mut m = server.mount(&["--attr-ttl", "0"]);
    let photo = m.join("photo.jpg");

    setxattr(&photo, "user.camera", b"XT-5", 0).unwrap();
    setxattr(&photo, "user.rating", &[0, 5, 255], 0).unwrap();
    assert_eq!(getxattr(&photo, "user.camera").unwrap(), b"XT-5");
    assert_eq!(getxattr(&photo, "user.rating").unwrap(), [0, 5, 255]);
    assert_eq!(
        setxattr(&photo, "user.camera", b"X", libc::XATTR_CREATE).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        setxattr(&photo, "user.lens", b"X", libc::XATTR_REPLACE).unwrap_err().raw_os_error(),
        Some(libc::ENODATA)
    );
    assert_eq!(getxattr(&photo, "user.missing").unwrap_err().raw_os_error(), Some(libc::ENODATA));
    let names = listxattr(&photo);
    // (This store has no ACLs, so user.xos.acl is not listed: xos_surface tests it.)
    for name in ["user.camera", "user.rating", "user.xos.storage_class", "user.xos.content_type"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    // Computed from this very object: readable by name, not carried by copying tools.
    assert!(!names.iter().any(|n| n == "user.xos.etag"), "{names:?}");

    // Stored as s3fs does, and the data is untouched.
    let stored = head_meta(&server, "photo.jpg");
    let xattr = stored.get("xattr").expect("x-amz-meta-xattr");
    assert!(xattr.starts_with("%7B"), "{xattr}");
    assert_eq!(server.stored("photo.jpg").unwrap(), vec![7u8; 1000]);

    // The xos views: the ETag and class are the store's; the Content-Type can be set.
    let etag = server.block_on(server.client.head_object().bucket(BUCKET).key("photo.jpg").send()).unwrap();
    assert_eq!(getxattr(&photo, "user.xos.etag").unwrap(), etag.e_tag().unwrap().trim_matches('"').as_bytes());
    assert_eq!(getxattr(&photo, "user.xos.storage_class").unwrap(), b"STANDARD");
    // Setting a computed view is accepted and ignored, so a copy carrying it never fails.
    setxattr(&photo, "user.xos.etag", b"x", 0).unwrap();
    assert_eq!(getxattr(&photo, "user.xos.etag").unwrap(), etag.e_tag().unwrap().trim_matches('"').as_bytes());
    setxattr(&photo, "user.xos.content_type", b"image/jpeg", 0).unwrap();
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("photo.jpg").send()).unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(getxattr(&photo, "user.camera").unwrap(), b"XT-5", "content type change lost the xattrs");

    // Other namespaces are refused without touching the store.
    assert_eq!(setxattr(&photo, "trusted.x", b"1", 0).unwrap_err().raw_os_error(), Some(libc::ENOTSUP));

    removexattr(&photo, "user.rating").unwrap();
    assert_eq!(getxattr(&photo, "user.rating").unwrap_err().raw_os_error(), Some(libc::ENODATA));
    assert_eq!(removexattr(&photo, "user.rating").unwrap_err().raw_os_error(), Some(libc::ENODATA));

    // Directories keep theirs on their marker.
    std::fs::create_dir(m.join("album")).unwrap();
    setxattr(&m.join("album"), "user.cover", b"photo.jpg", 0).unwrap();
    m.stop();
    let m = server.mount(&[]);
    assert_eq!(getxattr(&m.join("photo.jpg"), "user.camera").unwrap(), b"XT-5");
    assert_eq!(getxattr(&m.join("album"), "user.cover").unwrap(), b"photo.jpg");
}

#[test]
fn reading_every_attribute_costs_one_head_and_one_tagging_request_and_bad_tags_none() {
    let server = Server::memory();
    server.put("report.pdf", b"pdf".to_vec());
    let m = server.mount(&[]);
    let report = m.join("report.pdf");
    for name in ["user.a", "user.b", "user.c", "user.d", "user.e"] {
        setxattr(&report, name, b"value", 0).unwrap();
    }
    std::fs::metadata(&report).unwrap();
    server.server.stats().reset();
    // What cp -a, rsync -X and tar --xattrs do: list the names, read each.
    let out = std::process::Command::new("getfattr").args(["-d", "-m", "-"]).arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dump.lines().filter(|l| l.starts_with("user.")).count(), 7, "{dump}");
    let stats = server.server.stats();
    assert_eq!(stats.count("HeadObject"), 1, "{dump}");
    assert_eq!(stats.count("GetObjectTagging"), 1, "{dump}");

    // Tags past XOS's limits are refused before any request.
    stats.reset();
    let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
    let refused = setxattr(&report, "user.xos.tags", eleven.join("&").as_bytes(), 0);
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::E2BIG));
    let long_key = format!("{}=v", "k".repeat(129));
    let refused = setxattr(&report, "user.xos.tags", long_key.as_bytes(), 0);
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    for op in ["HeadObject", "GetObjectTagging", "PutObjectTagging"] {
        assert_eq!(stats.count(op), 0, "{op} sent for a value over the limits");
    }
}

#[test]
fn listings_fetch_posix_attributes_only_where_objects_carry_them() {
    let server = Server::memory();
    // Uploaded by another tool: no POSIX metadata, no marker.
    server.put_many((0..40).map(|i| (format!("plain/f{i:02}"), vec![1u8; 10])).collect());
    // Made by s3fs: a marker with attributes, files with modes, owners and a symlink.
    let put = |key: &str, body: &str, mode: &str| {
        server.put_with_meta(key, body, &[("mode", mode), ("uid", "1234"), ("gid", "4321")]);
    };
    put("posix/", "", "16877");
    for i in 0..20 {
        put(&format!("posix/f{i:02}"), "secret", "33152");
    }
    put("posix/link", "f00", SYMLINK_MODE);
    let m = server.mount(&[]);
    assert!(m.join("plain").is_dir() && m.join("posix").is_dir());

    server.server.stats().reset();
    let out = std::process::Command::new("ls").arg("-ln").arg(m.join("plain")).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("-rw-r--r--")).count(), 40);
    assert_eq!(server.server.stats().count("HeadObject"), 0, "ls -l of objects without metadata sent HEADs");

    // Listed again within the TTL: from memory, with this mount's own change in it.
    std::fs::write(m.join("plain/new"), b"n").unwrap();
    std::fs::remove_file(m.join("plain/f00")).unwrap();
    let lists = server.server.stats().count("ListObjects");
    let names = common::ls(&m.join("plain"));
    assert_eq!(server.server.stats().count("ListObjects"), lists, "a fresh listing was asked for again");
    assert_eq!(names.len(), 40);
    assert!(names.contains(&"new".to_string()) && !names.contains(&"f00".to_string()));

    let out = std::process::Command::new("ls").arg("-ln").arg(m.join("posix")).output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let files: Vec<&str> = listing.lines().filter(|l| l.starts_with('-')).collect();
    assert_eq!(files.len(), 20, "{listing}");
    assert!(files.iter().all(|l| l.starts_with("-rw------- 1 1234 4321 ")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.contains("link -> f00")), "{listing}");
}

#[test]
fn cp_within_the_mount_copies_on_the_server() {
    let server = Server::memory();
    let data = xosfs_testserver::pseudo_random_bytes(3 << 20, 70);
    server.put("clips/take1.mov", data.clone());
    let m = server.mount(&[]);
    server.server.stats().reset();
    let status =
        std::process::Command::new("cp").arg(m.join("clips/take1.mov")).arg(m.join("clips/take2.mov")).status();
    assert!(status.unwrap().success());
    let stats = server.server.stats();
    assert_eq!(stats.count("CopyObject"), 1);
    assert_eq!(stats.count("GetObject"), 0, "the data went through this machine");
    assert_eq!(stats.count("PutObject") + stats.count("UploadPart"), 0);
    assert_eq!(server.stored("clips/take2.mov").unwrap(), data);
    let head = server.block_on(server.client.head_object().bucket(BUCKET).key("clips/take2.mov").send()).unwrap();
    assert_eq!(head.content_type(), Some("video/quicktime"));
    assert!(head.metadata().is_some_and(|m| m.contains_key("mode")));
    assert_eq!(std::fs::read(m.join("clips/take2.mov")).unwrap(), data);
}
