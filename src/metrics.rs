//! What the daemon is doing, as counters and gauges in the Prometheus/OpenMetrics text
//! format (encoded by `prometheus-client`): requests by operation and status with their
//! latency, bytes each way, retries, throttling, the block cache, writers and staging,
//! open handles and inodes. One set per process (a daemon serves one mount), so every
//! layer counts into [`global`] without carrying a handle.
//!
//! It is served by `--metrics-addr` over HTTP and, always, on the mount's control socket
//! ([`control_socket`]), which `xosfs stats` reads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::Mutex;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The S3 operation (`GetObject`, `PutObject`, ...).
    pub op: String,
    /// `ok`, the HTTP status of a refusal, or `none` when no answer came.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

/// Reads live state into gauges just before they are encoded.
type Refresh = Box<dyn Fn(&Metrics) + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<OpLabel, Histogram>,
    pub bytes_down: Counter,
    pub bytes_up: Counter,
    pub retries: Family<OpLabel, Counter>,
    pub throttled: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Counter,
    pub prefetch_unread_bytes: Counter,
    pub files_being_written: Gauge,
    pub write_back_files: Gauge,
    pub write_back_bytes: Gauge,
    pub staging_bytes: Gauge,
    pub open_handles: Gauge,
    pub inodes: Gauge,
    refresh: Mutex<Vec<Refresh>>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("xosfs");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests sent to the store, by operation and status", requests.clone());
        let request_seconds =
            Family::<OpLabel, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register("request_duration_seconds", "Time until the store answered", request_seconds.clone());
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let retries = Family::<OpLabel, Counter>::default();
        registry.register("retries", "Requests sent again after a transient failure", retries.clone());
        Metrics {
            bytes_down: counter(&mut registry, "bytes_down", "Bytes of object bodies received"),
            bytes_up: counter(&mut registry, "bytes_up", "Bytes of object and part bodies sent"),
            throttled: counter(&mut registry, "throttled", "Requests the store answered with slow down (503, 429)"),
            cache_hits: counter(&mut registry, "cache_hits", "Blocks read from the block cache or a fetch under way"),
            cache_misses: counter(&mut registry, "cache_misses", "Blocks a read had to fetch"),
            cache_evictions: counter(&mut registry, "cache_evictions", "Blocks dropped from the block cache"),
            prefetch_unread_bytes: counter(
                &mut registry,
                "prefetch_unread_bytes",
                "Read-ahead bytes dropped from the block cache without having been read",
            ),
            write_back_files: gauge(
                &mut registry,
                "write_back_files",
                "Files closed with --write-back, not yet stored",
            ),
            write_back_bytes: gauge(&mut registry, "write_back_bytes", "Size of the files closed and not yet stored"),
            files_being_written: gauge(
                &mut registry,
                "files_being_written",
                "Files open for writing or still uploading (write-back included)",
            ),
            staging_bytes: gauge(&mut registry, "staging_bytes", "Disk taken by staging files in the cache directory"),
            open_handles: gauge(&mut registry, "open_handles", "Open file descriptors on the mount"),
            inodes: gauge(&mut registry, "inodes", "Inodes the daemon remembers"),
            requests,
            request_seconds,
            retries,
            registry,
            refresh: Mutex::new(Vec::new()),
        }
    }
}

/// A file a write-back close left to upload, counted as pending while this lives.
pub struct PendingUpload(i64);

impl PendingUpload {
    pub fn new(bytes: u64) -> PendingUpload {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        global().write_back_files.inc();
        global().write_back_bytes.inc_by(bytes);
        PendingUpload(bytes)
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        global().write_back_files.dec();
        global().write_back_bytes.dec_by(self.0);
    }
}

impl Metrics {
    /// Counts one answered (or failed) request of `op` that took `seconds`.
    pub fn request(&self, op: &str, status: Option<u16>, ok: bool, seconds: f64) {
        let status = match (ok, status) {
            (true, _) => "ok".to_string(),
            (false, Some(code)) => code.to_string(),
            (false, None) => "none".to_string(),
        };
        self.requests.get_or_create(&RequestLabels { op: op.to_string(), status }).inc();
        self.request_seconds.get_or_create(&OpLabel { op: op.to_string() }).observe(seconds);
    }

    /// Adds a reader of live state, run before every encoding.
    pub fn on_refresh(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.refresh.lock().push(Box::new(refresh));
    }

    /// Everything, in the text format.
    pub fn encode(&self) -> String {
        for refresh in self.refresh.lock().iter() {
            refresh(self);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves [`global`] over HTTP on `listener`: any GET gets the metrics.
pub async fn serve_http(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let Some(request) = read_head(&mut stream).await else { return };
            let response = if request.starts_with("GET ") {
                let body = global().encode();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!("metrics request: {e}");
            }
        });
    }
}

/// The request line and headers, up to the blank line (at most 8 KiB).
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 8192 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).ok()
}

/// Where the daemon of the mount at `mountpoint` (canonical) answers `xosfs stats`: a Unix
/// socket in the runtime directory (`/run/xosfs` for root, else `$XDG_RUNTIME_DIR/xosfs` or
/// `/tmp/xosfs-UID`), named by a digest of the mount point (paths can be longer than a
/// socket name may be).
pub fn control_socket(mountpoint: &Path) -> PathBuf {
    use md5::Digest;
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = match (uid, std::env::var_os("XDG_RUNTIME_DIR")) {
        (0, _) => PathBuf::from("/run/xosfs"),
        (_, Some(runtime)) => PathBuf::from(runtime).join("xosfs"),
        (_, None) => PathBuf::from(format!("/tmp/xosfs-{uid}")),
    };
    let digest = md5::Md5::digest(mountpoint.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.sock"))
}

/// Serves [`global`] on the control socket of `mountpoint` until the process ends; the
/// socket is removed by [`ControlSocket`]'s drop.
pub fn serve_control(mountpoint: &Path) -> std::io::Result<ControlSocket> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = control_socket(mountpoint);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    // A socket left by a daemon that died is in the way.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    // Counts only: anyone who can see the mount may read them.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((mut stream, _)) => {
                    let body = global().encode();
                    tokio::spawn(async move {
                        let _ = stream.write_all(body.as_bytes()).await;
                    });
                }
                Err(e) => {
                    warn!("control socket: {e}");
                    return;
                }
            }
        }
    });
    Ok(ControlSocket { path })
}

/// The control socket's path, removed when the daemon is done.
pub struct ControlSocket {
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_bytes_and_refreshed_gauges_are_encoded() {
        let m = Metrics::new();
        m.request("GetObject", None, true, 0.002);
        m.request("GetObject", Some(404), false, 0.001);
        m.bytes_down.inc_by(4096);
        m.on_refresh(|m| {
            m.open_handles.set(3);
        });
        let text = m.encode();
        assert!(text.contains("xosfs_requests_total{op=\"GetObject\",status=\"ok\"} 1"), "{text}");
        assert!(text.contains("xosfs_requests_total{op=\"GetObject\",status=\"404\"} 1"), "{text}");
        assert!(text.contains("xosfs_request_duration_seconds_count{op=\"GetObject\"} 2"), "{text}");
        assert!(text.contains("xosfs_bytes_down_total 4096"), "{text}");
        assert!(text.contains("xosfs_open_handles 3"), "{text}");
    }

    #[test]
    fn the_control_socket_is_named_by_the_mount_point() {
        let a = control_socket(Path::new("/mnt/a"));
        assert_ne!(a, control_socket(Path::new("/mnt/b")));
        assert_eq!(a, control_socket(Path::new("/mnt/a")));
        assert!(a.to_string_lossy().len() < 100, "fits a socket address");
    }
}
