//! What XOS knows of objects and buckets, through the mount, against moto's S3 server
//! (tagging, ACLs, versioning and bucket settings as S3 has them): multipart uploads,
//! `user.xos.*` attributes checked with SDK calls, copies by cp -a and rsync -aX, bucket
//! settings on the mount root, `xosfs share`/`info`, and `--version-at`.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{getxattr, listxattr, removexattr, setxattr, sha256, Moto, Server, BUCKET};

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<i32> {
    r.unwrap_err().raw_os_error()
}

/// A plain HTTP/1.1 GET of `url` (http only): the status and the body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = reply[split + 4..].to_vec();
    // Bodies come with Content-Length here, or chunked: undo the chunking.
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + body[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&body[at..line_end]).unwrap().trim(), 16).unwrap();
            if len == 0 {
                return (status, out);
            }
            out.extend_from_slice(&body[line_end + 2..line_end + 2 + len]);
            at = line_end + 4 + len;
        }
    }
    (status, body)
}

fn tags_of(moto: &Moto, key: &str) -> Vec<(String, String)> {
    let out = moto.block_on(moto.client.get_object_tagging().bucket(BUCKET).key(key).send()).unwrap();
    let mut tags: Vec<(String, String)> =
        out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
    tags.sort();
    tags
}

/// Whether the object's grants give everyone READ (the canned `public-read`).
fn public_read(moto: &Moto, key: &str) -> bool {
    let acl = moto.block_on(moto.client.get_object_acl().bucket(BUCKET).key(key).send()).unwrap();
    acl.grants().iter().any(|g| {
        g.grantee().and_then(|g| g.uri()).is_some_and(|u| u.ends_with("/AllUsers"))
            && g.permission().map(|p| p.as_str()) == Some("READ")
    })
}

fn tag_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn head(moto: &Moto, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    moto.block_on(moto.client.head_object().bucket(BUCKET).key(key).send()).unwrap()
}

#[test]
fn a_100_mib_copy_into_a_moto_backed_mount_is_stored_whole() {
    let moto = Moto::start();
    let m = moto.mount(&[]);
    let local = tempfile::tempdir().unwrap();
    let data = xosfs_testserver::pseudo_random_bytes(100 << 20, 7);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();

    let cp = Command::new("cp").arg(local.path().join("big.bin")).arg(m.join("big.bin")).status().unwrap();
    assert!(cp.success(), "cp of 100 MiB failed:\n{}", m.log());

    let stored = moto.stored("big.bin").expect("the object exists");
    assert_eq!(sha256(&stored), sha256(&data));
    assert!(head(&moto, "big.bin").e_tag().unwrap().contains('-'), "not a multipart upload");
}

#[test]
fn tags_acl_storage_class_and_content_type_are_set_through_xattrs_and_seen_by_the_sdk() {
    let moto = Moto::start();
    moto.put("clip.mp4", b"frames".to_vec());
    let m = moto.mount(&["--attr-ttl", "0"]);
    let clip = m.join("clip.mp4");
    let before = head(&moto, "clip.mp4");
    let mtime = std::fs::metadata(&clip).unwrap().modified().unwrap();

    // Tags: set as k=v&k=v (URL-encoded), read back, and neither data nor mtime change.
    assert_eq!(errno(getxattr(&clip, "user.xos.tags")), Some(libc::ENODATA));
    setxattr(&clip, "user.xos.tags", b"project=alpha&owner=ann+b%2Fc", 0).unwrap();
    assert_eq!(tags_of(&moto, "clip.mp4"), tag_pairs(&[("owner", "ann b/c"), ("project", "alpha")]));
    let read = String::from_utf8(getxattr(&clip, "user.xos.tags").unwrap()).unwrap();
    let mut read: Vec<&str> = read.split('&').collect();
    read.sort();
    assert_eq!(read, ["owner=ann+b%2Fc", "project=alpha"]);
    let after = head(&moto, "clip.mp4");
    assert_eq!((after.e_tag(), after.last_modified()), (before.e_tag(), before.last_modified()));
    assert_eq!(std::fs::metadata(&clip).unwrap().modified().unwrap(), mtime);
    assert_eq!(moto.stored("clip.mp4").unwrap(), b"frames");

    // XOS's limits are refused before any request, with a log line naming the limit.
    let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
    assert_eq!(errno(setxattr(&clip, "user.xos.tags", eleven.join("&").as_bytes(), 0)), Some(libc::E2BIG));
    let long_key = format!("{}=v", "k".repeat(129));
    assert_eq!(errno(setxattr(&clip, "user.xos.tags", long_key.as_bytes(), 0)), Some(libc::EINVAL));
    let long_value = format!("k={}", "v".repeat(257));
    assert_eq!(errno(setxattr(&clip, "user.xos.tags", long_value.as_bytes(), 0)), Some(libc::EINVAL));
    assert_eq!(tags_of(&moto, "clip.mp4").len(), 2, "a refused set reached the store");
    let log = m.log();
    assert!(log.contains("at most 10 per object"), "{log}");
    assert!(log.contains("keys of 1 to 128 bytes") && log.contains("values of up to 256 bytes"), "{log}");
    // An empty value removes them.
    setxattr(&clip, "user.xos.tags", b"", 0).unwrap();
    assert!(tags_of(&moto, "clip.mp4").is_empty());
    assert_eq!(errno(getxattr(&clip, "user.xos.tags")), Some(libc::ENODATA));

    // The ACL, read back from the grants; set with PutObjectAcl.
    assert_eq!(getxattr(&clip, "user.xos.acl").unwrap(), b"private");
    setxattr(&clip, "user.xos.acl", b"public-read", 0).unwrap();
    assert!(public_read(&moto, "clip.mp4"));
    assert_eq!(getxattr(&clip, "user.xos.acl").unwrap(), b"public-read");
    assert_eq!(errno(setxattr(&clip, "user.xos.acl", b"everyone", 0)), Some(libc::EINVAL));

    // The storage class: a copy onto itself with the new class, data and metadata kept.
    setxattr(&clip, "user.xos.storage_class", b"STANDARD_IA", 0).unwrap();
    assert_eq!(head(&moto, "clip.mp4").storage_class().map(|c| c.as_str()), Some("STANDARD_IA"));
    assert_eq!(getxattr(&clip, "user.xos.storage_class").unwrap(), b"STANDARD_IA");
    assert_eq!(moto.stored("clip.mp4").unwrap(), b"frames");
    setxattr(&clip, "user.xos.content_type", b"video/mp4", 0).unwrap();
    assert_eq!(head(&moto, "clip.mp4").content_type(), Some("video/mp4"));
    assert!(public_read(&moto, "clip.mp4"), "the copies onto itself lost the ACL");

    // Computed views: the ETag and the version (none: the bucket is not versioned).
    let etag = head(&moto, "clip.mp4").e_tag().unwrap().trim_matches('"').to_string();
    assert_eq!(getxattr(&clip, "user.xos.etag").unwrap(), etag.as_bytes());
    let versions = String::from_utf8(getxattr(&clip, "user.xos.versions").unwrap()).unwrap();
    assert_eq!(versions.lines().count(), 1, "{versions}");
    assert!(versions.ends_with(" 6 latest\n"), "{versions}");
    // Setting a computed one is accepted and changes nothing (copying tools carry them).
    setxattr(&clip, "user.xos.etag", b"something-else", 0).unwrap();
    assert_eq!(getxattr(&clip, "user.xos.etag").unwrap(), etag.as_bytes());

    // Listed: what describes the object; not listed: what is computed from this copy.
    setxattr(&clip, "user.xos.tags", b"a=1", 0).unwrap();
    let names = listxattr(&clip);
    for name in ["user.xos.tags", "user.xos.acl", "user.xos.storage_class", "user.xos.content_type"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    for name in ["user.xos.etag", "user.xos.url", "user.xos.version_id", "user.xos.versions"] {
        assert!(!names.iter().any(|n| n == name), "{name} in {names:?}");
    }
}

#[test]
fn cp_a_and_rsync_ax_of_a_tagged_file_within_the_mount_neither_fail_nor_warn() {
    let moto = Moto::start();
    moto.put("docs/a.txt", b"alpha".to_vec());
    let m = moto.mount(&[]);
    let a = m.join("docs/a.txt");
    setxattr(&a, "user.xos.tags", b"team=blue&year=2026", 0).unwrap();
    setxattr(&a, "user.xos.acl", b"public-read", 0).unwrap();
    setxattr(&a, "user.comment", b"first draft", 0).unwrap();

    let out = Command::new("cp").arg("-a").arg(&a).arg(m.join("docs/b.txt")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "cp -a: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("rsync").arg("-aX").arg(&a).arg(m.join("docs/c.txt")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "rsync -aX: {}", String::from_utf8_lossy(&out.stderr));

    let tagged = tag_pairs(&[("team", "blue"), ("year", "2026")]);
    for copy in ["docs/b.txt", "docs/c.txt"] {
        assert_eq!(moto.stored(copy).unwrap(), b"alpha", "{copy}");
        assert_eq!(tags_of(&moto, copy), tagged, "{copy}");
        assert!(public_read(&moto, copy), "{copy} lost its ACL");
        assert_eq!(getxattr(&m.join(copy), "user.comment").unwrap(), b"first draft", "{copy}");
    }

    // A chmod (a copy onto itself) and a rewrite (a new PUT) keep the tags and the ACL.
    std::fs::set_permissions(&a, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    std::io::Write::write_all(&mut file, b" and beta").unwrap();
    drop(file);
    assert_eq!(moto.stored("docs/a.txt").unwrap(), b"alpha and beta");
    assert_eq!(tags_of(&moto, "docs/a.txt"), tagged);
    assert!(public_read(&moto, "docs/a.txt"), "a.txt lost its ACL");
    std::fs::write(&a, b"alpha").unwrap();

    // tar --xattrs into the mount restores the tags with the files.
    let archive = tempfile::tempdir().unwrap();
    let tarball = archive.path().join("docs.tar");
    let out = Command::new("tar")
        .arg("--xattrs")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(m.path())
        .arg("docs")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "tar -c: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::create_dir(m.join("restored")).unwrap();
    let out = Command::new("tar")
        .arg("--xattrs")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(m.join("restored"))
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "tar -x: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tags_of(&moto, "restored/docs/a.txt"), tagged);
    assert_eq!(moto.stored("restored/docs/a.txt").unwrap(), b"alpha");

    // Out of the mount: the copy carries the object's tags, not its ETag or URL.
    let local = tempfile::tempdir().unwrap();
    let out = Command::new("cp").arg("-a").arg(&a).arg(local.path().join("a.txt")).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "cp -a out: {}", String::from_utf8_lossy(&out.stderr));
    let names = listxattr(&local.path().join("a.txt"));
    assert!(names.iter().any(|n| n == "user.xos.tags"), "{names:?}");
    assert!(!names.iter().any(|n| n == "user.xos.etag" || n == "user.xos.url"), "{names:?}");
}

#[test]
fn bucket_settings_are_attributes_of_the_mount_root() {
    let moto = Moto::start();
    let m = moto.mount(&[]);
    let root = m.path();

    // Versioning.
    assert_eq!(errno(getxattr(root, "user.xos.bucket.versioning")), Some(libc::ENODATA));
    setxattr(root, "user.xos.bucket.versioning", b"Enabled", 0).unwrap();
    // moto's GetBucketVersioning reply has a root element the SDK refuses (xosfs accepts
    // it): the setting is checked by its effect, two versions of one key.
    moto.put("twice", b"1".to_vec());
    moto.put("twice", b"2".to_vec());
    let listed = moto.block_on(moto.client.list_object_versions().bucket(BUCKET).prefix("twice").send()).unwrap();
    assert_eq!(listed.versions().len(), 2);
    assert_eq!(getxattr(root, "user.xos.bucket.versioning").unwrap(), b"Enabled");
    assert_eq!(errno(setxattr(root, "user.xos.bucket.versioning", b"on", 0)), Some(libc::EINVAL));

    // Policy: JSON, checked here; removed by removexattr.
    assert_eq!(errno(getxattr(root, "user.xos.bucket.policy")), Some(libc::ENODATA));
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}]}"#;
    setxattr(root, "user.xos.bucket.policy", policy.as_bytes(), 0).unwrap();
    let stored = moto.block_on(moto.client.get_bucket_policy().bucket(BUCKET).send()).unwrap();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(parse(stored.policy().unwrap()), parse(policy));
    assert_eq!(parse(&String::from_utf8(getxattr(root, "user.xos.bucket.policy").unwrap()).unwrap()), parse(policy));
    assert_eq!(errno(setxattr(root, "user.xos.bucket.policy", b"{not json", 0)), Some(libc::EINVAL));
    removexattr(root, "user.xos.bucket.policy").unwrap();
    assert!(moto.block_on(moto.client.get_bucket_policy().bucket(BUCKET).send()).is_err());

    // CORS, in the guide's JSON.
    let cors = r#"{"CORSRules":[{"AllowedMethods":["GET","PUT"],"AllowedOrigins":["*"],"AllowedHeaders":["*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3600}]}"#;
    setxattr(root, "user.xos.bucket.cors", cors.as_bytes(), 0).unwrap();
    let stored = moto.block_on(moto.client.get_bucket_cors().bucket(BUCKET).send()).unwrap();
    assert_eq!(stored.cors_rules()[0].allowed_methods(), ["GET", "PUT"]);
    assert_eq!(stored.cors_rules()[0].max_age_seconds(), Some(3600));
    assert_eq!(parse(&String::from_utf8(getxattr(root, "user.xos.bucket.cors").unwrap()).unwrap()), parse(cors));
    assert_eq!(errno(setxattr(root, "user.xos.bucket.cors", br#"{"CORSRules":[{"Bogus":1}]}"#, 0)), Some(libc::EINVAL));
    removexattr(root, "user.xos.bucket.cors").unwrap();
    assert_eq!(errno(getxattr(root, "user.xos.bucket.cors")), Some(libc::ENODATA));

    // Lifecycle, with the guide's rule fields.
    let rules = r#"{"Rules":[{"ID":"TestOnly","Status":"Enabled","Filter":{"Prefix":"documents/"},"Expiration":{"Days":3650},"Transitions":[{"Days":365,"StorageClass":"GLACIER"}]}]}"#;
    setxattr(root, "user.xos.bucket.lifecycle", rules.as_bytes(), 0).unwrap();
    let stored = moto.block_on(moto.client.get_bucket_lifecycle_configuration().bucket(BUCKET).send()).unwrap();
    assert_eq!(stored.rules()[0].id(), Some("TestOnly"));
    assert_eq!(stored.rules()[0].expiration().and_then(|e| e.days()), Some(3650));
    assert_eq!(parse(&String::from_utf8(getxattr(root, "user.xos.bucket.lifecycle").unwrap()).unwrap()), parse(rules));
    removexattr(root, "user.xos.bucket.lifecycle").unwrap();
    assert_eq!(errno(getxattr(root, "user.xos.bucket.lifecycle")), Some(libc::ENODATA));

    // The bucket's canned ACL.
    assert_eq!(getxattr(root, "user.xos.bucket.acl").unwrap(), b"private");
    setxattr(root, "user.xos.bucket.acl", b"public-read", 0).unwrap();
    assert_eq!(getxattr(root, "user.xos.bucket.acl").unwrap(), b"public-read");

    // Not listed (a copy of the root must not carry them), and not there below the root.
    assert!(!listxattr(root).iter().any(|n| n.starts_with("user.xos.bucket.")));
    std::fs::create_dir(m.join("sub")).unwrap();
    assert_eq!(errno(getxattr(&m.join("sub"), "user.xos.bucket.acl")), Some(libc::ENOTSUP));
    drop(m);

    // A prefix mount's root is not the bucket's.
    let sub = moto.mount_spec(&format!("{BUCKET}:/sub"), &[]);
    assert_eq!(errno(getxattr(sub.path(), "user.xos.bucket.versioning")), Some(libc::ENOTSUP));
    assert_eq!(errno(setxattr(sub.path(), "user.xos.bucket.policy", policy.as_bytes(), 0)), Some(libc::ENOTSUP));
}

#[test]
fn share_and_info_work_through_the_mount_and_the_link_serves_the_file() {
    let moto = Moto::start();
    moto.put("media/song.flac", b"music".to_vec());
    let m = moto.mount(&[]);
    let song = m.join("media/song.flac");
    setxattr(&song, "user.xos.tags", b"genre=jazz", 0).unwrap();

    let url = String::from_utf8(getxattr(&song, "user.xos.url").unwrap()).unwrap();
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");
    assert_eq!(http_get(&url), (200, b"music".to_vec()));

    let out = user_command(&["share", song.to_str().unwrap(), "--expires", "7d"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shared = String::from_utf8(out.stdout).unwrap();
    assert!(shared.contains("X-Amz-Expires=604800"), "{shared}");
    assert_eq!(http_get(shared.trim()), (200, b"music".to_vec()));

    let out = user_command(&["share", song.to_str().unwrap(), "--expires", "8d"]);
    assert_eq!(out.status.code(), Some(2));
    let out = user_command(&["share", "/etc/hostname"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a mounted xosfs"));

    let out = user_command(&["info", song.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = String::from_utf8(out.stdout).unwrap();
    let etag = head(&moto, "media/song.flac").e_tag().unwrap().trim_matches('"').to_string();
    for line in [
        "key: media/song.flac".to_string(),
        format!("etag: {etag}"),
        "size: 5".into(),
        "storage class: STANDARD".into(),
        "tags: genre=jazz".into(),
        "acl: private".into(),
    ] {
        assert!(info.lines().any(|l| l == line), "{line:?} not in\n{info}");
    }
    drop(m);

    // Through a prefix mount the key is the prefix's.
    let m = moto.mount_spec(&format!("{BUCKET}:/media"), &[]);
    let out = user_command(&["info", m.join("song.flac").to_str().unwrap()]);
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(info.lines().any(|l| l == "key: media/song.flac"), "{info}");
    let out = user_command(&["share", m.join("song.flac").to_str().unwrap()]);
    assert_eq!(http_get(String::from_utf8(out.stdout).unwrap().trim()), (200, b"music".to_vec()));
}

/// `xosfs ARGS` run as a user would, without the mount's credentials.
fn user_command(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xosfs"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap()
}

/// moto does not check a presigned URL's expiry; xosfs-testserver (s3s) checks SigV4 in
/// full, so the expiry is tested there.
#[test]
fn a_presigned_url_stops_working_after_its_expiry() {
    let server = Server::memory();
    server.put("note.txt", b"hello".to_vec());
    let m = server.mount(&[]);
    let url = String::from_utf8(getxattr(&m.join("note.txt"), "user.xos.url.2").unwrap()).unwrap();
    assert_eq!(http_get(&url), (200, b"hello".to_vec()));
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = http_get(&url);
    assert_eq!(status, 403, "the URL still works after its expiry");
}

#[test]
fn version_at_mounts_the_bucket_as_it_was_read_only() {
    let moto = Moto::start();
    moto.enable_versioning();
    moto.put("a.txt", b"first".to_vec());
    moto.put("b.txt", b"gone later".to_vec());
    // Versions are told apart to the second: TIME is a second away from both sides.
    std::thread::sleep(Duration::from_millis(1500));
    let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    std::thread::sleep(Duration::from_millis(1500));
    moto.put("a.txt", b"second".to_vec());
    moto.put("c.txt", b"new".to_vec());
    moto.block_on(moto.client.delete_object().bucket(BUCKET).key("b.txt").send()).unwrap();

    let time =
        aws_smithy_types::DateTime::from_secs(at as i64).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap();
    let m = moto.mount(&["--version-at", &time]);
    assert_eq!(common::ls(m.path()), ["a.txt", "b.txt"]);
    assert_eq!(std::fs::read(m.join("a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(m.join("b.txt")).unwrap(), b"gone later");
    assert_eq!(errno(std::fs::write(m.join("a.txt"), b"x")), Some(libc::EROFS));
    assert_eq!(errno(std::fs::write(m.join("d.txt"), b"x")), Some(libc::EROFS));
    assert_eq!(errno(std::fs::remove_file(m.join("b.txt"))), Some(libc::EROFS));

    // Every file lists its versions, newest first; the shown one is its version id.
    let versions = String::from_utf8(getxattr(&m.join("a.txt"), "user.xos.versions").unwrap()).unwrap();
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines.len(), 2, "{versions}");
    assert!(lines[0].ends_with(" 6 latest") && lines[1].ends_with(" 5 -"), "{versions}");
    let shown = String::from_utf8(getxattr(&m.join("a.txt"), "user.xos.version_id").unwrap()).unwrap();
    assert!(lines[1].starts_with(&format!("{shown} ")), "{shown} vs {versions}");
    let b_versions = String::from_utf8(getxattr(&m.join("b.txt"), "user.xos.versions").unwrap()).unwrap();
    assert!(b_versions.lines().next().unwrap().ends_with("latest,delete-marker"), "{b_versions}");
    // The link of a file in the past serves that version.
    let url = String::from_utf8(getxattr(&m.join("a.txt"), "user.xos.url").unwrap()).unwrap();
    assert_eq!(http_get(&url), (200, b"first".to_vec()));

    // A bad time is a one-line error and exit 2.
    let out = moto.xosfs().arg(BUCKET).arg(m.path()).args(["--version-at", "last tuesday"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn version_at_pages_through_more_than_a_thousand_versions() {
    let moto = Moto::start();
    moto.enable_versioning();
    // 600 keys of two versions each, then a delete marker on each: 1,800 entries, two
    // pages of ListObjectVersions continued by key and version-id markers.
    let keys: Vec<String> = (0..600).map(|i| format!("many/k{i:04}")).collect();
    moto.put_many(keys.iter().map(|k| (k.clone(), b"old".to_vec())).collect());
    moto.put_many(keys.iter().map(|k| (k.clone(), b"kept".to_vec())).collect());
    std::thread::sleep(Duration::from_millis(1500));
    let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    std::thread::sleep(Duration::from_millis(1500));
    for key in &keys {
        moto.block_on(moto.client.delete_object().bucket(BUCKET).key(key).send()).unwrap();
    }
    assert!(moto.keys().is_empty());

    let time =
        aws_smithy_types::DateTime::from_secs(at as i64).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap();
    let m = moto.mount(&["--version-at", &time]);
    assert_eq!(common::ls(&m.join("many")).len(), 600);
    assert_eq!(std::fs::read(m.join("many/k0599")).unwrap(), b"kept");
}
