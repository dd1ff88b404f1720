//! Real S3 endpoints on loopback for xosfs tests, demos and benchmarks.
//!
//! Both backends speak HTTP with SigV4 checked, so clients exercise the same signing, retry
//! and error paths as against a cloud endpoint. The same port serves STS AssumeRole
//! ([`sts`]): the S3 side accepts the temporary credentials it issued, with their session
//! token, until they expire.
//! - [`Backend::Fs`]: s3s-fs over a directory, i.e. a store where prefixes are directories;
//! - [`Backend::Memory`]: [`MemoryStore`], S3's flat namespace (`a` and `a/b` coexist).
//!
//! Every request goes through [`Instrumented`], which counts operations ([`Stats`]),
//! injects failures or latency ([`Faults`]) so tests can assert on the traffic a client
//! sent, and URL-encodes the names of listings asked for that way (the backends do not).

#[macro_use]
mod delegate;
mod fs;
mod instrument;
mod listing;
mod memory;
pub mod sts;

pub use fs::FsStore;
pub use instrument::{FaultAction, FaultRule, Faults, GetRange, Instrumented, Stats};
pub use memory::MemoryStore;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Where objects live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// s3s-fs over this directory (created if missing): persistent, directory-shaped.
    Fs(PathBuf),
    /// [`MemoryStore`]: flat namespace, lost when the server stops.
    Memory,
}

/// How to start a [`TestServer`]; start from `ServerConfig::default()` and override fields.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub backend: Backend,
    /// Address to bind; loopback unless a demo must be reachable from elsewhere.
    pub host: String,
    /// 0 picks a free port, so parallel tests never collide.
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
}

impl Default for ServerConfig {
    /// In-memory store on an ephemeral loopback port, with credentials that cannot be
    /// mistaken for real AWS keys.
    fn default() -> Self {
        ServerConfig {
            backend: Backend::Memory,
            host: "127.0.0.1".into(),
            port: 0,
            access_key: "xosfs-test-ak".into(),
            secret_key: "xosfs-test-sk-0123456789".into(),
        }
    }
}

/// A running S3 endpoint, usable from synchronous `#[test]` code: it serves on its own
/// tokio runtime, so the test thread stays free to block on a mount. Dropping it stops it.
pub struct TestServer {
    endpoint: String,
    access_key: String,
    secret_key: String,
    stats: Arc<Stats>,
    faults: Arc<Faults>,
    keys: Arc<sts::Keys>,
    memory: Option<MemoryStore>,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<Runtime>,
}

impl TestServer {
    /// Binds and starts serving before returning, so the endpoint is immediately usable.
    pub fn start(config: ServerConfig) -> io::Result<TestServer> {
        let stats = Arc::new(Stats::default());
        let faults = Arc::new(Faults::default());
        let keys = Arc::new(sts::Keys::new(config.access_key.clone(), config.secret_key.clone()));
        let memory = matches!(config.backend, Backend::Memory).then(MemoryStore::default);
        let service = build_service(&config, memory.clone(), keys.clone(), stats.clone(), faults.clone())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("xosfs-testserver")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        runtime.spawn(serve(listener, service, async {
            let _ = stopped.await;
        }));
        Ok(TestServer {
            endpoint: format!("http://{addr}"),
            access_key: config.access_key,
            secret_key: config.secret_key,
            stats,
            faults,
            keys,
            memory,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        })
    }

    /// `http://IP:PORT`, for a path-style client.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Requests received so far, per operation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Rules for injected errors and delays, applied to requests from now on.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The STS side: AssumeRole calls, issued credentials, requests refused as expired.
    pub fn sts(&self) -> &sts::Keys {
        &self.keys
    }

    /// The in-memory store being served ([`Backend::Memory`] only).
    pub fn memory_store(&self) -> Option<&MemoryStore> {
        self.memory.as_ref()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            // Blocking on shutdown is not allowed inside another runtime (a test may drop the
            // server from async code); the worker threads then exit on their own.
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

fn build_service(
    config: &ServerConfig,
    memory: Option<MemoryStore>,
    keys: Arc<sts::Keys>,
    stats: Arc<Stats>,
    faults: Arc<Faults>,
) -> io::Result<S3Service> {
    let mut builder = match (&config.backend, memory) {
        (Backend::Fs(root), _) => {
            std::fs::create_dir_all(root)?;
            S3ServiceBuilder::new(Instrumented::new(FsStore::new(root)?, stats, faults))
        }
        (Backend::Memory, memory) => {
            S3ServiceBuilder::new(Instrumented::new(memory.unwrap_or_default(), stats, faults))
        }
    };
    builder.set_auth(sts::KeyAuth(keys.clone()));
    builder.set_access(sts::SessionAccess(keys.clone()));
    builder.set_route(sts::StsRoute(keys));
    Ok(builder.build())
}

/// Accepts connections until `shutdown` resolves.
async fn serve(listener: TcpListener, service: S3Service, shutdown: impl Future<Output = ()>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without this, small responses wait for the peer's delayed ACK (~40 ms each).
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), with_request_ids(service.clone())).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Stamps every answer with an `x-amz-request-id`, as S3 and XOS do, so clients' error
/// reports can be checked for it.
fn with_request_ids(
    service: S3Service,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = s3s::HttpResponse,
    Error = s3s::HttpError,
    Future = impl Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + Send,
> + Clone {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    hyper::service::service_fn(move |req| {
        let service = service.clone();
        async move {
            let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut resp = hyper::service::Service::call(&service, req).await?;
            if let Ok(value) = http::HeaderValue::from_str(&format!("xosfs-test-{id:08x}")) {
                resp.headers_mut().insert("x-amz-request-id", value);
            }
            Ok(resp)
        }
    })
}

/// Deterministic pseudo-random bytes (xorshift): incompressible test data whose checksums
/// are the same on every run, so failures can be reproduced.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = (seed << 1) | 1; // odd and distinct for distinct seeds (below 2^63)
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
