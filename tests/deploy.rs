//! Deployment: shell completions, STS AssumeRole credentials renewed before they expire,
//! logs free of secrets, `xosfs cleanup` of stale multipart uploads, and mounting through
//! mount(8) from an fstab line or `mount -t xosfs`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use common::{is_mounted, Server, BUCKET};
use xosfs::cleanup::{self, Progress, Summary};
use xosfs::config::{ListVersion, S3Config};
use xosfs::s3::S3Store;
use xosfs::store::{ObjectError, UnfinishedUpload};

const ROLE: &str = "arn:aws:iam::role/xosfs-test";

fn xosfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xosfs"));
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run xosfs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(xosfs().args(["completions", shell]).env("XOSFS_ENDPOINT", "http://127.0.0.1:1"));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("cleanup") && script.contains("endpoint"), "{shell} script lacks names:\n{script}");
    }
    let out = run(xosfs().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

// ---- STS ----

fn sts_client(server: &Server) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .credentials_provider(Credentials::new(server.server.access_key(), server.server.secret_key(), None, None, "t"))
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn s3_client(server: &Server, creds: Credentials) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The error code of a failed ListObjects with these credentials, `None` if it worked.
fn list_error(server: &Server, creds: Credentials) -> Option<String> {
    let client = s3_client(server, creds);
    match server.block_on(client.list_objects().bucket(BUCKET).send()) {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or("no code").to_string()),
    }
}

#[test]
fn test_sts_issues_credentials_that_s3_accepts_only_with_their_token_until_expiry() {
    let server = Server::memory();
    server.server.sts().set_session_lifetime(Some(Duration::from_secs(2)));
    let out = server
        .block_on(sts_client(&server).assume_role().role_arn(ROLE).role_session_name("t").send())
        .expect("AssumeRole");
    let c = out.credentials().expect("credentials");
    let temp = |token: Option<&str>| {
        Credentials::new(c.access_key_id(), c.secret_access_key(), token.map(str::to_string), None, "t")
    };
    assert_eq!(list_error(&server, temp(Some(c.session_token()))), None);
    assert_eq!(list_error(&server, temp(Some("not-the-token"))).as_deref(), Some("InvalidToken"));
    assert_eq!(list_error(&server, temp(None)).as_deref(), Some("InvalidToken"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(list_error(&server, temp(Some(c.session_token()))).as_deref(), Some("ExpiredToken"));
    assert!(server.server.sts().expired_rejections() >= 1);
    // A long-term key that may only assume roles is refused by S3.
    server.server.sts().set_sessions_only(true);
    let long_term = Credentials::new(server.server.access_key(), server.server.secret_key(), None, None, "t");
    assert_eq!(list_error(&server, long_term).as_deref(), Some("AccessDenied"));
}

#[test]
fn mount_with_a_role_renews_its_credentials_before_they_expire() {
    let server = Server::memory();
    server.put("seed.txt", "seed");
    let sts = server.server.sts();
    // Every S3 request must use the role's credentials, which live 20 s.
    sts.set_sessions_only(true);
    sts.set_session_lifetime(Some(Duration::from_secs(20)));
    let m = server.mount(&["--role-arn", ROLE, "--role-session-name", "deploy-test", "--log-level", "debug"]);
    let until = Instant::now() + Duration::from_secs(50);
    let mut ops = 0;
    let mut i = 0;
    let failed = |what: &str, e: std::io::Error| -> ! {
        panic!(
            "{what}: {e} (after {} AssumeRole calls, {} expired rejections)",
            sts.assume_role_calls(),
            sts.expired_rejections()
        )
    };
    while Instant::now() < until {
        let name = format!("f{i}.txt");
        let body = format!("body {i}");
        std::fs::write(m.join(&name), &body).unwrap_or_else(|e| failed(&format!("write {name} after {ops} ops"), e));
        let back = std::fs::read_to_string(m.join(&name)).unwrap_or_else(|e| failed(&format!("read {name}"), e));
        assert_eq!(back, body);
        assert_eq!(std::fs::read_to_string(m.join("seed.txt")).unwrap(), "seed");
        assert!(common::ls(m.path()).contains(&name), "{name} missing from the listing");
        ops += 4;
        i += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    sts.set_sessions_only(false);
    assert_eq!(server.stored("f0.txt").as_deref(), Some(&b"body 0"[..]));
    assert!(sts.assume_role_calls() > 2, "AssumeRole called {} times over 50 s", sts.assume_role_calls());
    assert_eq!(sts.expired_rejections(), 0, "requests were sent with expired credentials:\n{}", m.log());
}

#[test]
fn secrets_and_signatures_never_reach_the_log() {
    let server = Server::memory();
    server.put("a.txt", "alpha");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("xosfs.log");
    let mut m = server.mount(&["--role-arn", ROLE, "--log-level", "trace", "--log-file", log.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(m.join("a.txt")).unwrap(), "alpha");
    std::fs::write(m.join("b.txt"), "beta").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::rename(m.join("b.txt"), m.join("d/b.txt")).unwrap();
    assert!(m.stop().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mounted") && text.contains("DEBUG"), "the debug log is missing:\n{text}");
    let issued = server.server.sts().issued();
    assert!(!issued.is_empty());
    let mut secrets = vec![server.server.secret_key().to_string()];
    for c in issued {
        secrets.push(c.secret_key);
        secrets.push(c.session_token);
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret reached the log:\n{text}");
    }
    assert!(!text.contains("Signature="), "a signature reached the log:\n{text}");
}

// ---- cleanup ----

fn start_upload(server: &Server, key: &str) -> String {
    let out = server
        .block_on(server.client.create_multipart_upload().bucket(BUCKET).key(key).send())
        .unwrap_or_else(|e| panic!("create upload {key}: {e:?}"));
    out.upload_id().unwrap().to_string()
}

/// Keys of the uploads still unfinished, sorted.
fn unfinished(server: &Server) -> Vec<String> {
    let out = server.block_on(server.client.list_multipart_uploads().bucket(BUCKET).send()).unwrap();
    let mut keys: Vec<String> = out.uploads().iter().map(|u| u.key().unwrap().to_string()).collect();
    keys.sort();
    keys
}

fn backdate(server: &Server, prefix: &str, age: Duration) {
    server.server.memory_store().expect("memory backend").backdate_uploads(BUCKET, prefix, age);
}

#[derive(Default)]
struct Recorder {
    stale: Vec<String>,
    pages: usize,
}

impl Progress for Recorder {
    fn stale(&mut self, upload: &UnfinishedUpload) {
        self.stale.push(upload.key.clone());
    }

    fn abort_failed(&mut self, upload: &UnfinishedUpload, error: &ObjectError) {
        panic!("abort of {} failed: {error}", upload.key);
    }

    fn advanced(&mut self, _: &Summary) {
        self.pages += 1;
    }
}

fn object_client(server: &Server) -> S3Store {
    let s3 = S3Config {
        endpoint: server.endpoint(),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        path_style: true,
        list_version: ListVersion::V1,
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        retries: 0,
    };
    let creds = Credentials::new(server.server.access_key(), server.server.secret_key(), None, None, "t");
    S3Store::new(&s3, SharedCredentialsProvider::new(creds))
}

#[test]
fn cleanup_pages_through_uploads_and_aborts_only_old_ones() {
    let server = Server::memory();
    for k in ["old/a", "old/b", "old/c", "old/d", "old/e"] {
        start_upload(&server, k);
    }
    backdate(&server, "old/", Duration::from_secs(2 * 86400));
    start_upload(&server, "new/x");
    start_upload(&server, "new/y");
    let client = object_client(&server);
    let cutoff = SystemTime::now() - Duration::from_secs(86400);

    // A dry run lists, page by page, and aborts nothing.
    let mut seen = Recorder::default();
    let summary = server.block_on(cleanup::run(&client, "", cutoff, true, 2, &mut seen)).unwrap();
    assert_eq!(summary, Summary { found: 7, stale: 5, aborted: 0, failed: 0 });
    assert_eq!(seen.stale, ["old/a", "old/b", "old/c", "old/d", "old/e"]);
    assert_eq!(seen.pages, 4, "7 uploads, 2 a page");
    assert_eq!(unfinished(&server).len(), 7);

    server.server.stats().reset();
    let mut seen = Recorder::default();
    let summary = server.block_on(cleanup::run(&client, "", cutoff, false, 2, &mut seen)).unwrap();
    assert_eq!(summary, Summary { found: 7, stale: 5, aborted: 5, failed: 0 });
    assert_eq!(server.server.stats().count("ListMultipartUploads"), 4);
    assert_eq!(server.server.stats().count("AbortMultipartUpload"), 5);
    assert_eq!(unfinished(&server), ["new/x", "new/y"]);
}

fn cleanup_cmd(server: &Server, args: &[&str]) -> Output {
    run(xosfs()
        .arg("cleanup")
        .args(args)
        .args(["--endpoint", &server.endpoint(), "--path-style"])
        .env("AWS_ACCESS_KEY_ID", server.server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.server.secret_key())
        .env_remove("XOSFS_PASSWD_FILE"))
}

#[test]
fn cleanup_command_honours_dry_run_age_and_prefix() {
    let server = Server::memory();
    let a = start_upload(&server, "tmp/a");
    start_upload(&server, "tmp/b");
    start_upload(&server, "keep/c");
    backdate(&server, "", Duration::from_secs(2 * 86400));
    start_upload(&server, "tmp/new");
    let spec = format!("{BUCKET}:/tmp");

    let out = cleanup_cmd(&server, &[&spec, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&a) && text.contains("tmp/a") && text.contains("tmp/b"), "{text}");
    assert!(!text.contains("keep/c") && !text.contains("tmp/new"), "{text}");
    assert_eq!(text.lines().last(), Some("would abort 2 of 3 unfinished uploads (1 younger than 24h kept)"));
    assert_eq!(unfinished(&server).len(), 4);

    // Three days: none of them is that old.
    let out = cleanup_cmd(&server, &[&spec, "--older-than", "3d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "aborted 0 of 3 unfinished uploads (3 younger than 3d kept)");

    let out = cleanup_cmd(&server, &[&spec, "--older-than", "1d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "aborted 2 of 3 unfinished uploads (1 younger than 1d kept)");
    assert_eq!(unfinished(&server), ["keep/c", "tmp/new"]);

    let out = cleanup_cmd(&server, &[BUCKET, "--older-than", "3x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("xosfs: --older-than '3x' is not a duration"), "{}", stderr(&out));
    let out = cleanup_cmd(&server, &["no-such-bucket"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bucket 'no-such-bucket' does not exist"), "{}", stderr(&out));
}

// ---- mount(8) ----

/// mount(8) runs helpers only from /sbin (and /sbin/fs.d, /sbin/fs): links
/// /sbin/mount.xosfs to the binary under test unless something is there already, and
/// removes only what it made.
struct Helper {
    made: Option<PathBuf>,
}

impl Helper {
    fn install() -> Helper {
        let path = Path::new("/sbin/mount.xosfs");
        if path.symlink_metadata().is_ok() {
            return Helper { made: None };
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xosfs"), path).expect("link /sbin/mount.xosfs (needs root)");
        Helper { made: Some(path.to_path_buf()) }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(path) = &self.made {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            common::force_unmount(self.0);
        }
    }
}

/// The type and source that /proc/self/mountinfo gives a mount point.
fn mount_entry(mp: &Path) -> (String, String) {
    let target = std::fs::canonicalize(mp).unwrap().to_string_lossy().replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(target.as_str())).expect("mounted");
    let mut fields = line.split(" - ").nth(1).unwrap().split(' ');
    (fields.next().unwrap().to_string(), fields.next().unwrap().to_string())
}

fn umount(mp: &Path) {
    let status = Command::new("umount").arg(mp).status().unwrap();
    assert!(status.success(), "umount {}", mp.display());
}

#[test]
fn mount_8_uses_the_helper_from_fstab_and_with_t_xosfs() {
    let server = Server::memory();
    server.put("docs/a.txt", "alpha");
    let _helper = Helper::install();
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd-xosfs");
    std::fs::write(&passwd, format!("{}:{}\n", server.server.access_key(), server.server.secret_key())).unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (fstab_mp, t_mp) = (dir.path().join("fstab-mnt"), dir.path().join("t-mnt"));
    std::fs::create_dir(&fstab_mp).unwrap();
    std::fs::create_dir(&t_mp).unwrap();
    let _guards = (Unmount(&fstab_mp), Unmount(&t_mp));
    let cache = dir.path().join("cache");
    let common_options = format!("passwd_file={},cache_dir={}", passwd.display(), cache.display());
    let mount = || {
        let mut cmd = Command::new("mount");
        cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("XOSFS_ENDPOINT");
        cmd
    };

    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# a test fstab\n{BUCKET}:/docs {} xosfs _netdev,nofail,url={},use_path_request_style,{common_options} 0 0\n",
            fstab_mp.display(),
            server.endpoint()
        ),
    )
    .unwrap();
    let out = mount().arg("--fstab").arg(&fstab).arg(&fstab_mp).output().unwrap();
    assert!(out.status.success(), "mount --fstab: {}", stderr(&out));
    assert!(is_mounted(&fstab_mp));
    assert_eq!(std::fs::read_to_string(fstab_mp.join("a.txt")).unwrap(), "alpha");

    let options = format!("endpoint={},path_style,{common_options}", server.endpoint());
    let out = mount().args(["-t", "xosfs", BUCKET]).arg(&t_mp).args(["-o", &options]).output().unwrap();
    assert!(out.status.success(), "mount -t xosfs: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(t_mp.join("docs/a.txt")).unwrap(), "alpha");
    // What findmnt -t fuse.xosfs and df -t select by.
    assert_eq!(mount_entry(&fstab_mp), ("fuse.xosfs".to_string(), format!("{BUCKET}:/docs")));
    assert_eq!(mount_entry(&t_mp), ("fuse.xosfs".to_string(), BUCKET.to_string()));

    umount(&fstab_mp);
    umount(&t_mp);
}
