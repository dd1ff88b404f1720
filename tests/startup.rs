//! Start-up: every wrong setting fails before anything is mounted, with one line naming
//! the cause and a non-zero exit; a good one mounts, daemonized or in the foreground.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{is_mounted, Server, BUCKET};

/// Runs xosfs to completion (daemon mode unless the args say otherwise).
fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdin(std::process::Stdio::null()).output().expect("run xosfs")
}

/// Asserts a failed start: the exit code, one stderr line containing `needle`, no mount.
fn assert_fails(out: &Output, code: i32, needle: &str, mountpoint: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "expected one line, got: {stderr}");
    assert!(stderr.starts_with("xosfs: ") && stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert!(!is_mounted(mountpoint), "a failed start left a mount behind");
}

/// Asserts that the bucket mounted with `args` (on a fresh mount point, against a
/// running server) is refused as a usage error, its line containing `needle`.
fn refused(args: &[&str], needle: &str) {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let out = run(server.xosfs().args([BUCKET, mp.path().to_str().unwrap()]).args(args));
    assert_fails(&out, 2, needle, mp.path());
}

#[test]
fn endpoint_without_scheme_is_refused() {
    refused(&["--endpoint", "xos.example.com"], "is not a URL with http:// or https://");
}

#[test]
fn unknown_option_is_refused_by_name() {
    refused(&["-o", "path_style,no_such_thing=1"], "unknown mount option 'no_such_thing'");
}

#[test]
fn a_disk_cache_size_without_a_disk_cache_is_refused() {
    refused(
        &["-o", "path_style,disk_cache_size=1G"],
        "--disk-cache-size sizes the --disk-cache DIR, and none is given",
    );
}

#[test]
fn unreachable_endpoint_is_reported() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = run(server.xosfs().args([BUCKET, mp.path().to_str().unwrap(), "--endpoint", &endpoint]));
    assert_fails(&out, 1, &format!("cannot reach endpoint {endpoint}"), mp.path());
}

#[test]
fn wrong_secret_key_is_access_denied() {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let out =
        run(server.xosfs().env("AWS_SECRET_ACCESS_KEY", "not-the-secret").args([BUCKET, mp.path().to_str().unwrap()]));
    assert_fails(&out, 1, "access to bucket 'bucket' denied", mp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not-the-secret"), "the secret leaked into the message: {stderr}");
}

#[test]
fn missing_bucket_is_reported() {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let out = run(server.xosfs().args(["no-such-bucket", mp.path().to_str().unwrap()]));
    assert_fails(&out, 1, "bucket 'no-such-bucket' does not exist", mp.path());
}

#[test]
fn missing_mount_point_is_reported() {
    let server = Server::memory();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = run(server.xosfs().args([BUCKET, missing.to_str().unwrap()]));
    assert_fails(&out, 1, "does not exist", &missing);
}

#[test]
fn busy_mount_point_is_reported() {
    let server = Server::memory();
    server.put("f", "x");
    let m = server.mount(&[]);
    let out = run(server.xosfs().args([BUCKET, m.path().to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is busy"), "{stderr}");
    // The first mount is untouched.
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"x");
}

#[test]
fn passwd_file_open_to_others_is_refused_and_0600_works() {
    let server = Server::memory();
    server.put("hello.txt", "hi");
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd-xosfs");
    std::fs::write(&passwd, format!("{BUCKET}:{}:{}\n", server.server.access_key(), server.server.secret_key()))
        .unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mut cmd = server.xosfs();
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd.args([BUCKET, mp.to_str().unwrap(), "--passwd-file", passwd.to_str().unwrap()]));
    assert_fails(&out, 1, "accessible by group or others (mode 0644)", &mp);

    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = server.mount(&["--passwd-file", passwd.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(m.join("hello.txt")).unwrap(), "hi");
}

#[test]
fn daemon_returns_once_mounted_and_exits_on_unmount() {
    let server = Server::memory();
    server.put("docs/a.txt", "alpha");
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let out = run(server.xosfs().args([BUCKET, mp.to_str().unwrap()]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Mounted and answering the moment the parent returns.
    assert!(is_mounted(&mp));
    assert_eq!(std::fs::read_to_string(mp.join("docs/a.txt")).unwrap(), "alpha");
    let daemon = daemon_pids(&mp);
    assert_eq!(daemon.len(), 1, "expected one daemon for {}", mp.display());
    let status = std::process::Command::new("umount").arg(&mp).status().unwrap();
    assert!(status.success());
    // The daemon notices the unmount and exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Path::new(&format!("/proc/{}", daemon[0])).exists() {
        assert!(std::time::Instant::now() < deadline, "daemon still running after unmount");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn daemon_reports_start_up_errors_through_the_parent() {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let out = run(server.xosfs().env("AWS_SECRET_ACCESS_KEY", "wrong").args([BUCKET, mp.path().to_str().unwrap()]));
    assert_fails(&out, 1, "denied", mp.path());
}

#[test]
fn sigterm_unmounts_cleanly() {
    let server = Server::memory();
    server.put("f", "x");
    let mut m = server.mount(&[]);
    let status = m.stop();
    assert!(status.success(), "exit status {status}");
    assert!(!is_mounted(m.path()));
}

/// Processes whose command line names this mount point (zombies excluded).
fn daemon_pids(mountpoint: &Path) -> Vec<u32> {
    let needle = mountpoint.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == needle)
        })
        .collect()
}

#[test]
fn mount_helper_form_takes_an_fstab_option_list() {
    let server = Server::memory();
    server.put("docs/a.txt", "alpha");
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.xosfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xosfs"), &helper).unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let options =
        format!("_netdev,nofail,allow_other,x-systemd.automount,url={},use_path_request_style", server.endpoint());
    let helper_cmd = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(&helper);
        cmd.env("AWS_ACCESS_KEY_ID", server.server.access_key())
            .env("AWS_SECRET_ACCESS_KEY", server.server.secret_key())
            .arg(BUCKET)
            .arg(&mp)
            .args(extra)
            .args(["-o", &options]);
        cmd
    };
    // mount -f (fake): checked, nothing mounted.
    let out = run(&mut helper_cmd(&["-f", "-v"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&mp));
    let out = run(&mut helper_cmd(&["-n", "-t", "xosfs"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(&mp));
    assert_eq!(std::fs::read_to_string(mp.join("docs/a.txt")).unwrap(), "alpha");
    let status = std::process::Command::new("umount").arg(&mp).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_cache_dir_open_to_others_is_refused_and_a_new_one_is_private() {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out =
        run(server.xosfs().args([BUCKET, mp.path().to_str().unwrap(), "--cache-dir", cache.path().to_str().unwrap()]));
    assert_fails(&out, 1, "lets group or others in", mp.path());
    // One xosfs makes is private to its user.
    let fresh = cache.path().join("new");
    let out = run(server.xosfs().args([BUCKET, mp.path().to_str().unwrap(), "--cache-dir", fresh.to_str().unwrap()]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(std::process::Command::new("umount").arg(mp.path()).status().unwrap().success());
}

#[test]
fn a_bad_or_taken_metrics_address_is_refused() {
    let server = Server::memory();
    let mp = tempfile::tempdir().unwrap();
    let mount_point = mp.path().to_str().unwrap();
    let out = run(server.xosfs().args([BUCKET, mount_point, "--metrics-addr", "localhost"]));
    assert_fails(&out, 2, "--metrics-addr 'localhost' is not an address", mp.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(server.xosfs().args([BUCKET, mount_point, "-f", "--metrics-addr", &addr]));
    assert_fails(&out, 1, &format!("cannot serve metrics on {addr}"), mp.path());
}
