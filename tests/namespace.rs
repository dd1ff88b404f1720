//! The read-only namespace: paging through big directories with both listing versions,
//! directories with and without markers, skipped keys, name clashes, prefix mounts, and
//! attributes (defaults, and s3fs-compatible metadata).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ls, Server, BUCKET};

#[test]
fn directory_of_2500_keys_lists_completely_with_both_listing_versions() {
    let server = Server::fs();
    let expected: Vec<String> = (0..2500).map(|i| format!("file-{i:05}")).collect();
    server.put_many(expected.iter().map(|n| (format!("big/{n}"), n.as_bytes().to_vec())).collect());
    server.put("big/sub/inner", "i");
    let mut with_sub = expected.clone();
    with_sub.push("sub".into());
    with_sub.sort();

    for (version, op) in [("1", "ListObjects"), ("2", "ListObjectsV2")] {
        let m = server.mount(&["--list-version", version]);
        let before = server.server.stats().count(op);
        assert_eq!(ls(&m.join("big")), with_sub, "list version {version}");
        // 2,501 entries at 1,000 keys a page: at least three pages were requested.
        assert!(server.server.stats().count(op) - before >= 3, "list version {version} did not page");
        // Sizes come with the listing.
        assert_eq!(std::fs::metadata(m.join("big/file-02499")).unwrap().len(), 10);
    }
}

#[test]
fn nested_prefixes_with_and_without_markers_are_directories() {
    let server = Server::memory();
    server.put("implicit/deeper/leaf.txt", "leaf");
    server.put("marked/", "");
    server.put("marked/inner/", "");
    server.put("marked/inner/x.txt", "x");
    server.put("empty/", "");
    server.put("top.txt", "top");

    let m = server.mount(&[]);
    assert_eq!(ls(m.path()), ["empty", "implicit", "marked", "top.txt"]);
    for dir in ["implicit", "implicit/deeper", "marked", "marked/inner", "empty"] {
        assert!(std::fs::metadata(m.join(dir)).unwrap().is_dir(), "{dir} is not a directory");
    }
    assert_eq!(ls(&m.join("implicit")), ["deeper"]);
    assert_eq!(ls(&m.join("marked")), ["inner"], "the marker itself is not an entry");
    assert!(ls(&m.join("empty")).is_empty());
    assert_eq!(std::fs::read_to_string(m.join("implicit/deeper/leaf.txt")).unwrap(), "leaf");
    assert_eq!(std::fs::read_to_string(m.join("marked/inner/x.txt")).unwrap(), "x");
    // Lookups without a listing first (a fresh mount) agree.
    drop(m);
    let m = server.mount(&[]);
    assert!(std::fs::metadata(m.join("implicit/deeper")).unwrap().is_dir());
    assert!(std::fs::metadata(m.join("empty")).unwrap().is_dir());
    assert!(std::fs::metadata(m.join("top.txt")).unwrap().is_file());
    assert_eq!(std::fs::metadata(m.join("nope")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    // `find` walks the whole tree.
    let out = std::process::Command::new("find").arg(".").current_dir(m.path()).output().unwrap();
    let mut found: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    found.sort();
    assert_eq!(
        found,
        [
            ".",
            "./empty",
            "./implicit",
            "./implicit/deeper",
            "./implicit/deeper/leaf.txt",
            "./marked",
            "./marked/inner",
            "./marked/inner/x.txt",
            "./top.txt"
        ]
    );
}

#[test]
fn keys_that_cannot_be_paths_are_skipped_with_a_warning() {
    let server = Server::memory();
    let long = "n".repeat(256);
    for key in ["ok.txt", "double//slash", "dot/./x", "dotdot/../y", &format!("long/{long}"), "long/fine"] {
        server.put(key, "data");
    }
    let m = server.mount(&[]);
    assert_eq!(ls(m.path()), ["dot", "dotdot", "double", "long", "ok.txt"]);
    assert!(ls(&m.join("double")).is_empty());
    assert!(ls(&m.join("dot")).is_empty());
    assert!(ls(&m.join("dotdot")).is_empty());
    assert_eq!(ls(&m.join("long")), ["fine"]);
    let log = m.log();
    for needle in ["double//", "dot/./", "dotdot/../", "longer than 255 bytes"] {
        assert!(log.contains("skipping") && log.contains(needle), "no warning naming {needle} in:\n{log}");
    }
}

#[test]
fn directory_wins_over_file_of_the_same_name() {
    let server = Server::memory();
    server.put("x", "i am a file");
    server.put("x/inner", "inner");
    server.put("x.txt", "beside");
    let m = server.mount(&[]);
    assert_eq!(ls(m.path()), ["x", "x.txt"]);
    assert!(std::fs::metadata(m.join("x")).unwrap().is_dir());
    assert_eq!(std::fs::read_to_string(m.join("x/inner")).unwrap(), "inner");
    assert!(m.log().contains("reachable only by its key"), "{}", m.log());
}

#[test]
fn prefix_mount_shows_only_that_subtree() {
    let server = Server::memory();
    server.put("outside.txt", "no");
    server.put("team/media/clip.bin", "clip");
    server.put("team/media/more/deep.txt", "deep");
    server.put("team/other.txt", "other");
    let m = server.mount_spec(&format!("{BUCKET}:/team/media"), &[]);
    assert_eq!(ls(m.path()), ["clip.bin", "more"]);
    assert_eq!(std::fs::read_to_string(m.join("more/deep.txt")).unwrap(), "deep");
    assert!(!m.join("outside.txt").exists());
}

#[test]
fn attributes_use_mount_defaults_and_s3fs_metadata() {
    let server = Server::memory();
    server.put("plain.txt", "12345");
    let mtime = 1_600_000_000u64;
    let (mode, secs) = ((0o100600u32).to_string(), mtime.to_string());
    server.put_with_meta("s3fs.txt", "abc", &[("mode", &mode), ("uid", "1234"), ("gid", "5678"), ("mtime", &secs)]);
    server.put("dir/f", "f");
    let m = server.mount(&["--uid", "4242", "--gid", "4343", "--file-mode", "0640", "--dir-mode", "0750"]);

    let plain = std::fs::metadata(m.join("plain.txt")).unwrap();
    assert_eq!(plain.len(), 5);
    assert_eq!(plain.permissions().mode() & 0o7777, 0o640);
    assert_eq!((plain.uid(), plain.gid()), (4242, 4343));
    let age = SystemTime::now().duration_since(plain.modified().unwrap()).unwrap_or_default();
    assert!(age < Duration::from_secs(600), "mtime should be the upload time, is {age:?} old");

    let s3fs = std::fs::metadata(m.join("s3fs.txt")).unwrap();
    assert_eq!(s3fs.permissions().mode() & 0o7777, 0o600);
    assert_eq!((s3fs.uid(), s3fs.gid()), (1234, 5678));
    assert_eq!(s3fs.modified().unwrap(), UNIX_EPOCH + Duration::from_secs(mtime));

    let dir = std::fs::metadata(m.join("dir")).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.permissions().mode() & 0o7777, 0o750);
    assert_eq!((dir.uid(), dir.gid()), (4242, 4343));

    let statfs = nix_statfs(m.path());
    assert!(statfs.0 > 0 && statfs.1 == 255, "statfs blocks {} namemax {}", statfs.0, statfs.1);
}

#[test]
fn read_only_mount_refuses_writes() {
    let server = Server::memory();
    server.put("f.txt", "x");
    let m = server.mount(&["--read-only"]);
    let err = std::fs::OpenOptions::new().write(true).open(m.join("f.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::read_to_string(m.join("f.txt")).unwrap(), "x");
}

/// (free blocks, name max) of a mounted filesystem.
fn nix_statfs(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and an out-struct we own.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    (s.f_bfree as u64, s.f_namemax as u64)
}

#[test]
fn names_a_url_would_encode_are_listed_read_and_stored_as_they_are() {
    // Listings are asked for URL-encoded (S3 encodes a space as '+'): a name with '+' or
    // '%' must not come back as another name.
    let files = ["a b", "a+b", "%20", "100%", "q?x", "h#1", "amp&er", "ü é", "x=1;y", "dir+1/f", "sp ace/%2F"];
    for server in [Server::memory(), Server::fs()] {
        let m = server.mount(&[]);
        for name in files {
            if let Some((dir, _)) = name.split_once('/') {
                std::fs::create_dir_all(m.join(dir)).unwrap();
            }
            std::fs::write(m.join(name), name).unwrap();
        }
        let list = |dir: &str| {
            let mut names: Vec<String> = std::fs::read_dir(m.join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let mut top: Vec<&str> = files.iter().map(|f| f.split('/').next().unwrap()).collect();
        top.sort();
        assert_eq!(list(""), top);
        assert_eq!((list("dir+1"), list("sp ace")), (vec!["f".to_string()], vec!["%2F".to_string()]));
        for name in files {
            assert_eq!(std::fs::read_to_string(m.join(name)).unwrap(), name, "{name}");
        }
        let mut keys: Vec<String> = server.keys().into_iter().filter(|k| !k.ends_with('/')).collect();
        keys.sort();
        let mut expected: Vec<&str> = files.to_vec();
        expected.sort();
        assert_eq!(keys, expected);
    }
}
