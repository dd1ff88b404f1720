//! The account mount (`--all-buckets`) through the real mount: the buckets are the
//! top-level directories; mkdir and rmdir there create and delete buckets; below them
//! everything behaves as in a bucket mount.

mod common;

use std::io::ErrorKind as IoKind;
use std::process::Stdio;

use aws_sdk_s3::primitives::ByteStream;
use common::{getxattr, is_mounted, ls, setxattr, Endpoint, Moto, Server, BUCKET};
use xosfs_testserver::{pseudo_random_bytes, FaultAction, FaultRule};

fn bucket_names(endpoint: &Endpoint) -> Vec<String> {
    let out = endpoint.block_on(endpoint.client.list_buckets().send()).unwrap();
    out.buckets().iter().filter_map(|b| b.name().map(str::to_string)).collect()
}

fn stored_in(endpoint: &Endpoint, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = endpoint.block_on(endpoint.client.get_object().bucket(bucket).key(key).send()).ok()?;
    Some(endpoint.block_on(out.body.collect()).unwrap().into_bytes().to_vec())
}

fn errno(result: std::io::Result<()>) -> Option<i32> {
    result.expect_err("expected an error").raw_os_error()
}

#[test]
fn the_account_is_listed_and_buckets_are_made_used_and_removed() {
    let server = Server::memory();
    server.create_bucket("photos");
    server.put("docs/a.txt", "alpha");
    let m = server.mount_spec("xos", &["--all-buckets"]);

    assert_eq!(ls(m.path()), [BUCKET, "photos"]);
    assert_eq!(std::fs::read_to_string(m.join("bucket/docs/a.txt")).unwrap(), "alpha");
    assert!(std::fs::metadata(m.join("photos")).unwrap().is_dir(), "an empty bucket is an empty directory");
    assert!(ls(&m.join("photos")).is_empty());

    // mkdir at the top creates a bucket, which is then written like any bucket mount.
    std::fs::create_dir(m.join("videos")).unwrap();
    assert!(bucket_names(&server).contains(&"videos".to_string()));
    let clip = pseudo_random_bytes(3 << 20, 7);
    std::fs::write(m.join("videos/clip.bin"), &clip).unwrap();
    assert_eq!(stored_in(&server, "videos", "clip.bin").as_deref(), Some(&clip[..]));
    assert_eq!(ls(m.path()), [BUCKET, "photos", "videos"]);

    // rmdir is refused while the bucket holds an object, then deletes it.
    assert_eq!(errno(std::fs::remove_dir(m.join("videos"))), Some(libc::ENOTEMPTY));
    std::fs::remove_file(m.join("videos/clip.bin")).unwrap();
    std::fs::remove_dir(m.join("videos")).unwrap();
    assert!(!bucket_names(&server).contains(&"videos".to_string()));
    assert_eq!(ls(m.path()), [BUCKET, "photos"]);

    // Invalid names are refused before any request, with a log line saying why.
    let created = server.server.stats().count("CreateBucket");
    for bad in ["Bad_Name", "ab", "-dash", "192.168.0.1"] {
        assert_eq!(errno(std::fs::create_dir(m.join(bad))), Some(libc::EINVAL), "{bad}");
    }
    assert_eq!(server.server.stats().count("CreateBucket"), created, "no request for an invalid name");
    assert!(m.log().contains("'Bad_Name' is not a valid bucket name"), "{}", m.log());

    // Only buckets are at the top: no files, symlinks, renames of buckets.
    assert_eq!(errno(std::fs::write(m.join("top.txt"), "x")), Some(libc::EPERM));
    assert_eq!(errno(std::os::unix::fs::symlink("photos", m.join("link"))), Some(libc::EPERM));
    assert_eq!(errno(std::fs::rename(m.join("photos"), m.join("pictures"))), Some(libc::EPERM));
    assert_eq!(errno(std::fs::rename(m.join("bucket/docs/a.txt"), m.join("a.txt"))), Some(libc::EPERM));

    // Between buckets a rename is EXDEV, so mv copies the bytes and removes the source.
    assert_eq!(errno(std::fs::rename(m.join("bucket/docs/a.txt"), m.join("photos/a.txt"))), Some(libc::EXDEV));
    let mv = std::process::Command::new("mv").arg(m.join("bucket/docs/a.txt")).arg(m.join("photos/a.txt")).status();
    assert!(mv.unwrap().success());
    assert_eq!(stored_in(&server, "photos", "a.txt").as_deref(), Some(&b"alpha"[..]));
    assert_eq!(stored_in(&server, BUCKET, "docs/a.txt"), None);

    // tar into a bucket's directory sets its times and owner too ("."): they are kept for
    // as long as the mount, as the directory has no object.
    let (src, _) = common::local_tree();
    let tar = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("tar cf - -C {}/tree . | tar xf - -C {}/photos", src.path().display(), m.path().display()))
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
    assert_eq!(stored_in(&server, "photos", "sub/b.bin").map(|b| b.len()), Some(200_000));
}

#[test]
fn an_unfinished_multipart_upload_keeps_its_bucket() {
    let server = Server::memory();
    server.create_bucket("uploads");
    let started =
        server.block_on(server.client.create_multipart_upload().bucket("uploads").key("big.bin").send()).unwrap();
    let m = server.mount_spec("xos", &["--all-buckets"]);

    assert!(ls(&m.join("uploads")).is_empty(), "no object is listed");
    assert_eq!(errno(std::fs::remove_dir(m.join("uploads"))), Some(libc::ENOTEMPTY));
    assert!(m.log().contains("unfinished multipart uploads"), "{}", m.log());
    assert_eq!(server.server.stats().count("DeleteBucket"), 0);

    server
        .block_on(
            server
                .client
                .abort_multipart_upload()
                .bucket("uploads")
                .key("big.bin")
                .upload_id(started.upload_id().unwrap())
                .send(),
        )
        .unwrap();
    std::fs::remove_dir(m.join("uploads")).unwrap();
    assert!(!bucket_names(&server).contains(&"uploads".to_string()));
}

#[test]
fn credentials_that_may_not_list_buckets_fail_at_start_up() {
    let server = Server::memory();
    server.server.faults().add(FaultRule {
        op: "ListBuckets".into(),
        key_contains: None,
        action: FaultAction::Error { status: 403 },
        remaining: None,
    });
    let mp = tempfile::tempdir().unwrap();
    let out =
        server.xosfs().args(["--all-buckets", mp.path().to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("listing the buckets was denied") && stderr.contains("s3:ListAllMyBuckets"), "{stderr}");
    assert!(!is_mounted(mp.path()));
}

#[test]
fn an_fstab_line_with_a_label_mounts_the_account() {
    let server = Server::memory();
    server.put("x.txt", "x");
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.xosfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xosfs"), &helper).unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    // `xos /mnt/xos xosfs all_buckets,url=...,use_path_request_style 0 0`
    let out = std::process::Command::new(&helper)
        .env("AWS_ACCESS_KEY_ID", server.server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.server.secret_key())
        .arg("xos")
        .arg(&mp)
        .args(["-o", &format!("all_buckets,url={},use_path_request_style", server.endpoint())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(mp.join("bucket/x.txt")).unwrap(), "x");
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table.lines().find(|l| l.contains(mp.to_str().unwrap())).unwrap().to_string();
    assert!(line.contains(" xos:* "), "the label is the source: {line}");
    // `xosfs info` finds the bucket and key of a file through the label.
    let info =
        std::process::Command::new(env!("CARGO_BIN_EXE_xosfs")).arg("info").arg(mp.join("bucket/x.txt")).output();
    let info = String::from_utf8_lossy(&info.unwrap().stdout).into_owned();
    assert!(info.contains("bucket: bucket\n") && info.contains("key: x.txt\n"), "{info}");
    assert!(std::process::Command::new("umount").arg(&mp).status().unwrap().success());
}

/// Each bucket directory carries its bucket's settings (moto keeps them as S3 does).
#[test]
fn bucket_settings_are_attributes_of_each_bucket_directory() {
    let moto = Moto::start();
    moto.create_bucket("media");
    let m = moto.mount_spec("xos", &["--all-buckets"]);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*"}]}"#;
    setxattr(&m.join("media"), "user.xos.bucket.policy", policy.as_bytes(), 0).unwrap();
    let stored = moto.block_on(moto.client.get_bucket_policy().bucket("media").send()).unwrap();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(parse(stored.policy().unwrap()), parse(policy));
    assert!(moto.block_on(moto.client.get_bucket_policy().bucket(BUCKET).send()).is_err(), "only that bucket changed");
    let read_back = String::from_utf8(getxattr(&m.join("media"), "user.xos.bucket.policy").unwrap()).unwrap();
    assert_eq!(parse(&read_back), parse(policy));
    let at_top = getxattr(m.path(), "user.xos.bucket.policy").unwrap_err();
    assert_eq!(at_top.raw_os_error(), Some(libc::ENOTSUP), "the top is no bucket");
    // And a file in a bucket carries its object's attributes.
    moto.block_on(moto.client.put_object().bucket("media").key("a.jpg").body(ByteStream::from_static(b"j")).send())
        .unwrap();
    setxattr(&m.join("media/a.jpg"), "user.xos.tags", b"kind=photo", 0).unwrap();
    let tags = moto.block_on(moto.client.get_object_tagging().bucket("media").key("a.jpg").send()).unwrap();
    assert_eq!(tags.tag_set()[0].key(), "kind");
    assert!(matches!(std::fs::metadata(m.join("nope")), Err(e) if e.kind() == IoKind::NotFound));
}

/// With --write-back, deletes go in batches; removing a bucket waits for them.
#[test]
fn rm_rf_of_a_bucket_under_write_back_deletes_it() {
    let server = Server::memory();
    let m = server.mount_spec("xos", &["--all-buckets", "--write-back"]);
    std::fs::create_dir(m.join("scratch")).unwrap();
    for i in 0..20 {
        std::fs::write(m.join(&format!("scratch/f{i}")), format!("file {i}")).unwrap();
    }
    std::fs::create_dir(m.join("scratch/sub")).unwrap();
    std::fs::write(m.join("scratch/sub/g"), "g").unwrap();
    let status = std::process::Command::new("rm").arg("-rf").arg(m.join("scratch")).status().unwrap();
    assert!(status.success());
    assert!(!bucket_names(&server).contains(&"scratch".to_string()), "{}", m.log());
    assert_eq!(ls(m.path()), [BUCKET]);
}
