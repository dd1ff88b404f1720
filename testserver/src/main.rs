//! `xosfs-testserver`: a local S3 endpoint for demos and benchmarks, optionally seeded
//! with a demo bucket. Prints `listening on URL` once its buckets exist, and `seeded BUCKET`
//! once the demo data is in place, so scripts can wait for either line. On SIGUSR1 it prints
//! `stats gets=N get_bytes=B`: GetObject requests and the body bytes they were answered
//! with since it started (for benchmarks: what a client fetched).

mod demo;

use std::error::Error;
use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use xosfs_testserver::{Backend, ServerConfig, TestServer};

#[derive(Debug, Parser)]
#[command(version, about = "Local S3 endpoint (s3s-fs or in-memory) with SigV4 authentication")]
struct Opt {
    /// Serve s3s-fs over this directory; buckets are its subdirectories and persist.
    #[arg(long, value_name = "DIR", conflicts_with = "memory", required_unless_present = "memory")]
    root: Option<PathBuf>,
    /// Serve the in-memory store with S3's flat namespace; contents vanish on exit.
    #[arg(long)]
    memory: bool,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8014)]
    port: u16,
    /// Access key clients must sign with (default: xosfs-test-ak).
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    /// Secret key clients must sign with (default: xosfs-test-sk-0123456789).
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// Create this bucket if missing (repeatable).
    #[arg(long = "bucket", value_name = "NAME")]
    buckets: Vec<String>,
    /// Fill this bucket (created if missing) with demo files through the S3 API.
    #[arg(long, value_name = "BUCKET")]
    seed_demo: Option<String>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let opt = Opt::parse();
    let defaults = ServerConfig::default();
    let server = TestServer::start(ServerConfig {
        backend: match opt.root.clone() {
            Some(root) => Backend::Fs(root),
            None => Backend::Memory,
        },
        host: opt.host.clone(),
        port: opt.port,
        access_key: opt.access_key.clone().unwrap_or(defaults.access_key),
        secret_key: opt.secret_key.clone().unwrap_or(defaults.secret_key),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(&server, &opt))
}

async fn run(server: &TestServer, opt: &Opt) -> Result<(), Box<dyn Error>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut report = signal(SignalKind::user_defined1())?;
    let client = demo::client(server);
    for bucket in opt.buckets.iter().chain(&opt.seed_demo) {
        demo::ensure_bucket(&client, bucket).await?;
    }
    println!("listening on {}", server.endpoint());
    let work = async {
        if let Some(bucket) = &opt.seed_demo {
            demo::seed(&client, bucket).await?;
            println!("seeded {bucket}");
        }
        std::future::pending::<Result<(), Box<dyn Error>>>().await
    };
    let reports = async {
        while report.recv().await.is_some() {
            let stats = server.stats();
            println!("stats gets={} get_bytes={}", stats.count("GetObject"), stats.get_bytes());
        }
    };
    tokio::select! {
        result = work => result,
        _ = reports => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}
