//! The integration harness: a real S3 server (xosfs-testserver: s3s-fs or the in-memory
//! flat store, SigV4 checked) on a loopback port, an SDK client to seed it through the S3
//! API, and the xosfs binary mounted over it through /dev/fuse, always unmounted on drop.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use tempfile::TempDir;
use xosfs_testserver::{Backend, ServerConfig, TestServer};

pub const BUCKET: &str = "bucket";

/// An S3 endpoint on loopback with its keys: an SDK client to seed and inspect it through
/// the S3 API, and the xosfs binary pointed at it.
pub struct Endpoint {
    url: String,
    access_key: String,
    secret_key: String,
    pub client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
}

/// xosfs-testserver: s3s-fs or the in-memory flat store, with request counts and faults.
pub struct Server {
    pub server: TestServer,
    s3: Endpoint,
    _root: Option<TempDir>,
}

impl std::ops::Deref for Server {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.s3
    }
}

impl Server {
    /// s3s-fs over a fresh directory: real storage, directories as prefixes.
    pub fn fs() -> Server {
        let root = tempfile::tempdir().unwrap();
        Server::start(Backend::Fs(root.path().to_path_buf()), Some(root))
    }

    /// The in-memory store with S3's flat namespace (`a` and `a/b` coexist).
    pub fn memory() -> Server {
        Server::start(Backend::Memory, None)
    }

    fn start(backend: Backend, root: Option<TempDir>) -> Server {
        let server = TestServer::start(ServerConfig { backend, ..ServerConfig::default() }).expect("start S3 server");
        let s3 = Endpoint::new(server.endpoint(), server.access_key(), server.secret_key());
        s3.create_bucket(BUCKET);
        Server { server, s3, _root: root }
    }
}

/// moto's S3 server (`moto_server`, from PyPI's `moto[server]`), in memory: tagging, ACLs,
/// versioning and bucket settings as S3 has them. Killed on drop.
pub struct Moto {
    child: Child,
    s3: Endpoint,
}

impl std::ops::Deref for Moto {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.s3
    }
}

impl Moto {
    /// A fresh moto server on a free loopback port, with the bucket BUCKET.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server (scripts/test.sh installs moto[server])");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // moto accepts any keys.
        let moto = Moto { child, s3: Endpoint::new(format!("http://127.0.0.1:{port}"), "moto-key", "moto-secret") };
        moto.create_bucket(BUCKET);
        moto
    }

    /// Turns versioning on for BUCKET.
    pub fn enable_versioning(&self) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        self.block_on(self.client.put_bucket_versioning().bucket(BUCKET).versioning_configuration(conf).send())
            .expect("enable versioning");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint {
    fn new(url: String, access_key: impl Into<String>, secret_key: impl Into<String>) -> Endpoint {
        let (access_key, secret_key) = (access_key.into(), secret_key.into());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&url)
            .force_path_style(true)
            .credentials_provider(Credentials::new(&access_key, &secret_key, None, None, "test"))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        Endpoint { url, access_key, secret_key, client, rt }
    }

    pub fn endpoint(&self) -> String {
        self.url.clone()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.block_on(self.client.create_bucket().bucket(bucket).send()).expect("create bucket");
    }

    pub fn put(&self, key: &str, data: impl Into<Vec<u8>>) {
        let body = ByteStream::from(data.into());
        self.block_on(self.client.put_object().bucket(BUCKET).key(key).body(body).send())
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Puts many small objects, 32 at a time.
    pub fn put_many(&self, objects: Vec<(String, Vec<u8>)>) {
        self.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (key, data) in objects {
                let client = self.client.clone();
                tasks.spawn(async move {
                    client
                        .put_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .body(ByteStream::from(data))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
                });
                while tasks.len() >= 32 {
                    tasks.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        });
    }

    /// Puts an object carrying user metadata (`x-amz-meta-NAME: VALUE`), as s3fs writes them.
    pub fn put_with_meta(&self, key: &str, data: impl Into<Vec<u8>>, meta: &[(&str, &str)]) {
        let mut req = self.client.put_object().bucket(BUCKET).key(key).body(ByteStream::from(data.into()));
        for (name, value) in meta {
            req = req.metadata(*name, *value);
        }
        self.block_on(req.send()).unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Every key in the bucket, in the store's (sorted) order, paging as needed.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .block_on(self.client.list_objects_v2().bucket(BUCKET).set_continuation_token(token).send())
                .unwrap();
            keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => return keys,
            }
        }
    }

    /// The stored object's bytes, read with the SDK (not through the mount).
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.block_on(self.client.get_object().bucket(BUCKET).key(key).send()).ok()?;
        Some(self.block_on(out.body.collect()).unwrap().into_bytes().to_vec())
    }

    /// The xosfs command with this server's endpoint and credentials (from the environment).
    pub fn xosfs(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xosfs"));
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("XOSFS_ENDPOINT")
            .arg("--endpoint")
            .arg(self.endpoint())
            .arg("--path-style");
        cmd
    }

    pub fn mount(&self, extra: &[&str]) -> Mount {
        self.mount_spec(BUCKET, extra)
    }

    /// Mounts `spec` (BUCKET[:/PREFIX]) in the foreground as a child process.
    pub fn mount_spec(&self, spec: &str, extra: &[&str]) -> Mount {
        self.mount_inner(spec, None, extra)
    }

    /// Mounts the bucket with the cache directory `cache`, which outlives the mount (as a
    /// machine's does a crash).
    pub fn mount_with_cache(&self, cache: &Path, extra: &[&str]) -> Mount {
        self.mount_inner(BUCKET, Some(cache), extra)
    }

    fn mount_inner(&self, spec: &str, cache: Option<&Path>, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache.map_or_else(|| dir.path().join("cache"), Path::to_path_buf);
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let log = dir.path().join("xosfs.log");
        let child = self
            .xosfs()
            .arg(spec)
            .arg(&mountpoint)
            .arg("--foreground")
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn xosfs");
        let mut m = Mount { dir, mountpoint, log, child: Some(child) };
        m.wait_mounted();
        m
    }
}

pub struct Mount {
    dir: TempDir,
    mountpoint: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mount {
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&self.mountpoint) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("xosfs exited ({status}) before mounting:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "xosfs did not mount within 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (as the OOM killer would), then detaches its dead
    /// mount as an administrator would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
        force_unmount(&self.mountpoint);
        assert!(!is_mounted(&self.mountpoint), "the dead mount is still attached");
    }

    /// Unmounts with SIGTERM, as a user's Ctrl-C or systemd stop would; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                force_unmount(&self.mountpoint);
                let _ = child.kill();
                panic!("xosfs did not exit within 30 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                force_unmount(&self.mountpoint);
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                eprintln!("--- xosfs log ---\n{}", self.log());
            } else {
                let status = self.stop();
                assert!(status.success(), "xosfs exited with {status} on SIGTERM:\n{}", self.log());
            }
        }
        assert!(!is_mounted(&self.mountpoint), "still mounted after stop");
        let _ = &self.dir;
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path.parent().unwrap()).map(|p| p.join(path.file_name().unwrap())) else {
        return false;
    };
    let target = canonical.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

pub fn force_unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).status();
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

/// Names in a directory, sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A local tree to copy in (`tree/a.txt` = "alpha", `tree/sub/b.bin` 200,000 random bytes)
/// and a tarball of it (`t.tar`), in a temporary directory.
pub fn local_tree() -> (TempDir, PathBuf) {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("tree/sub")).unwrap();
    std::fs::write(src.path().join("tree/a.txt"), "alpha").unwrap();
    std::fs::write(src.path().join("tree/sub/b.bin"), xosfs_testserver::pseudo_random_bytes(200_000, 2)).unwrap();
    let tarball = src.path().join("t.tar");
    let tar = Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(src.path()).arg("tree").status().unwrap();
    assert!(tar.success());
    (src, tarball)
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

pub fn setxattr(path: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<()> {
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::setxattr(c(path).as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn getxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(c(path).as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn listxattr(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid NUL-terminated path and a buffer of the given length.
    let n = unsafe { libc::listxattr(c(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into()).collect()
}

pub fn removexattr(path: &Path, name: &str) -> std::io::Result<()> {
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe { libc::removexattr(c(path).as_ptr(), name.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
