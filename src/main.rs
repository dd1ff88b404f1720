//! `xosfs [OPTIONS] BUCKET[:/PREFIX] MOUNTPOINT`: parse, check, daemonize, mount, serve.
//! `xosfs cleanup ...` aborts stale multipart uploads; `xosfs recover` handles kept files;
//! `xosfs share PATH` and `xosfs info PATH` read a mounted file's XOS attributes;
//! `xosfs completions SHELL` prints a completion script.
//!
//! Exit codes: 0 mounted (or served and unmounted cleanly, or a subcommand succeeded),
//! 1 start-up or runtime failure, 2 invalid command line or option.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use xosfs::cli::{CleanupArgs, InfoArgs, Invocation, MountArgs, RecoverArgs, ShareArgs};
use xosfs::config::{Bandwidth, CleanupConfig, Config, RecoverConfig, S3Config};
use xosfs::credentials::CredentialsConfig;
use xosfs::daemon::{self, StartupReport};
use xosfs::fs::{Fs, UploadDefaults};
use xosfs::mount::{self, MountSpec};
use xosfs::read::DiskCache;
use xosfs::s3::{S3Buckets, S3Store};
use xosfs::store::{
    Account, AccountStore, AsOfStore, BandwidthLimit, DeleteQueue, ErrorKind, MeteredStore, ObjectError, ObjectStore,
    RetryPolicy, RetryingStore,
};
use xosfs::write::journal::{Journal, StoreId};
use xosfs::write::{recovery, WriteConfig};
use xosfs::{cleanup, cli, credentials, metrics, recover, share, stats};

fn main() -> ExitCode {
    let (args, helper) = cli::helper_args(std::env::args_os().collect::<Vec<OsString>>());
    match cli::parse(args) {
        Ok(Invocation::Mount(args)) => mount_main(*args, helper),
        Ok(Invocation::Cleanup(args)) => cleanup_main(*args),
        Ok(Invocation::Recover(args)) => recover_main(*args),
        Ok(Invocation::Stats(args)) => match stats::run(&args.mountpoint, args.watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xosfs: {e}");
                ExitCode::from(1)
            }
        },
        Ok(Invocation::Share(args)) => share_main(args),
        Ok(Invocation::Info(args)) => info_main(args),
        Ok(Invocation::Completions(shell)) => {
            clap_complete::generate(shell, &mut cli::command(), "xosfs", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(e),
    }
}

fn mount_main(args: MountArgs, helper: cli::HelperFlags) -> ExitCode {
    let mut config = match Config::from_cli(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xosfs: {e}");
            return ExitCode::from(2);
        }
    };
    config.mountpoint = match mount::check_mountpoint(&config.mountpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xosfs: {e}");
            return ExitCode::from(1);
        }
    };
    if helper.fake {
        // mount -f: everything checked that can be without mounting.
        return ExitCode::SUCCESS;
    }
    // A daemon changes no directory, but resolve relative paths before anything else can.
    for path in [&mut config.credentials.passwd_file, &mut config.log_file].into_iter().flatten() {
        if let Ok(abs) = std::path::absolute(&*path) {
            *path = abs;
        }
    }
    let report = if config.foreground {
        StartupReport::foreground()
    } else {
        match daemon::daemonize() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("xosfs: cannot become a daemon: {e}");
                return ExitCode::from(1);
            }
        }
    };
    run(config, report)
}

/// clap's errors are several lines; the user needs the first, and help goes to stdout.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    // The first paragraph says what is wrong ("...not provided:" lists the arguments on the
    // lines below it); usage and tips follow.
    let text = e.to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let first = if first.is_empty() { "invalid command line".to_string() } else { first.join(" ") };
    eprintln!("xosfs: {} (see xosfs --help)", first.trim_start_matches("error: "));
    ExitCode::from(2)
}

/// The runtime's workers: one per two cores. The FUSE session threads copy requests in
/// and out and the blocking pool does the staging and disk-cache I/O, so the runtime only
/// drives the network; a worker per core made every request wake an idle sibling as
/// well (on 2 cores, 1 worker took a seventh less CPU for 1,000 small files and for a
/// 1 GiB write, and read as fast).
fn runtime_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn run(config: Config, report: StartupReport) -> ExitCode {
    if let Err(e) = init_logging(&config, report.is_daemon()) {
        report.failed(&format!("cannot open log file: {e}"));
        return ExitCode::from(1);
    }
    // Nested filesystem futures (rename over a writer's flush over a multipart upload) are
    // polled on the worker's stack; unoptimized builds overflowed tokio's 2 MiB default.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_workers())
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report.failed(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let (client, account) = match rt.block_on(connect(&config)) {
        Ok(c) => c,
        Err(msg) => {
            report.failed(&msg);
            return ExitCode::from(1);
        }
    };
    let client: Arc<dyn ObjectStore> = match config.bandwidth {
        Bandwidth { down: None, up: None } => client,
        Bandwidth { down, up } => Arc::new(BandwidthLimit::new(client, down, up)),
    };
    // With --write-back, unlink and rmdir return before the store has deleted: the deletes
    // go in batches, and every later request on their keys waits for them.
    let deletes = config.write.write_back.then(|| {
        let _runtime = rt.enter();
        Arc::new(DeleteQueue::new(client.clone()))
    });
    let client: Arc<dyn ObjectStore> = match &deletes {
        Some(queue) => queue.clone(),
        None => client,
    };
    if let Err(e) = prepare_cache_dir(&config.write.cache_dir) {
        report.failed(&format!("cannot use cache directory {}: {e}", config.write.cache_dir.display()));
        return ExitCode::from(1);
    }
    let w = &config.write;
    let write_cfg = Arc::new(
        WriteConfig::new(w.part_size, w.concurrency, w.buffer, w.cache_dir.clone(), w.copy_threshold)
            .with_store(store_id(&config.s3))
            .with_write_back(w.write_back)
            .with_cache_limit(w.cache_limit),
    );
    let defaults = UploadDefaults { acl: w.acl.clone(), storage_class: w.storage_class.clone() };
    let mut fs = Fs::new(client.clone(), config.fs.clone(), write_cfg.clone(), defaults, config.read);
    if let Some(account) = account {
        fs = fs.with_account(account);
    }
    if let Some((dir, size)) = &config.disk_cache {
        match DiskCache::open(dir, *size, &config.s3.bucket) {
            Ok(disk) => fs = fs.with_disk_cache(disk),
            Err(e) => {
                report.failed(&e.to_string());
                return ExitCode::from(1);
            }
        }
    }
    let fs = Arc::new(fs);
    let metrics_listener = match config.metrics_addr {
        Some(addr) => match rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(listener) => Some(listener),
            Err(e) => {
                report.failed(&format!("cannot serve metrics on {addr}: {e}"));
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    {
        let (fs, writes) = (fs.clone(), write_cfg.clone());
        metrics::global().on_refresh(move |m| {
            m.open_handles.set(fs.open_handles() as i64);
            m.inodes.set(fs.inode_count() as i64);
            m.files_being_written.set(writes.active_writers() as i64);
            m.staging_bytes.set(writes.space.used() as i64);
        });
    }
    let fs_name = match (&config.account, config.fs.prefix.as_str()) {
        // Not a bucket's name (none has a `:`): how `xosfs share` tells an account mount.
        (Some(label), _) => format!("{label}:*"),
        (None, "") => config.s3.bucket.clone(),
        (None, p) => format!("{}:/{}", config.s3.bucket, p.trim_end_matches('/')),
    };
    let spec =
        MountSpec { mountpoint: &config.mountpoint, fs_name, read_only: config.fs.read_only, access: config.access };
    let session_fs = fs.clone();
    let mounted = match mount::mount(fs, &rt, spec) {
        Ok(m) => m,
        Err(e) => {
            report.failed(&format!("cannot mount on {}: {e}", config.mountpoint.display()));
            return ExitCode::from(1);
        }
    };
    // The mount answers once a stat through it succeeds; only then is start-up over.
    if let Err(e) = std::fs::metadata(&config.mountpoint) {
        report.failed(&format!("the mount on {} does not answer: {e}", config.mountpoint.display()));
        return ExitCode::from(1);
    }
    tracing::info!(bucket = %config.s3.bucket, mountpoint = %config.mountpoint.display(), "mounted");
    let daemon = report.is_daemon();
    report.mounted();
    if daemon {
        if let Err(e) = daemon::detach_stdio() {
            tracing::warn!("cannot detach from the terminal: {e}");
        }
    }
    if let Some(listener) = metrics_listener {
        rt.spawn(metrics::serve_http(listener));
    }
    let _control = {
        let _runtime = rt.enter();
        metrics::serve_control(&config.mountpoint)
            .inspect_err(|e| tracing::warn!("no control socket for xosfs stats: {e}"))
            .ok()
    };
    // Files an earlier daemon left in the journal: uploaded (or kept) while this one serves
    // (not through a view of the past, which takes no writes).
    if config.version_at.is_none() {
        rt.spawn(recovery::recover_and_retry(client, write_cfg.clone(), config.write.keep_failed));
    }
    let served = mounted.serve_until_stopped(&rt);
    session_fs.end_session();
    // Closes that were still uploading when the session ended finish before the process
    // does: their writers were told they succeeded.
    rt.block_on(write_cfg.wait_for_writers(|left| tracing::info!("waiting for {left} file(s) to finish uploading")));
    write_cfg.journal.remove_spares();
    if let Some(queue) = deletes {
        rt.block_on(queue.flush());
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the session ended with an error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Credentials, then HeadBucket (ListBuckets for an account) and one listing of the
/// prefix, each sent once: every way the settings can be wrong shows up here as one
/// line, at once, before anything is mounted. The mount then retries what fails
/// transiently.
async fn connect(config: &Config) -> Result<(Arc<dyn ObjectStore>, Option<Arc<Account>>), String> {
    let (store, account) = store(&config.s3, &config.credentials, config.fs.metadata_ttl).await?;
    let explain = |e| explain(&config.s3, e);
    store.head_bucket().await.map_err(explain)?;
    store.list_page(&config.fs.prefix, None, 1).await.map_err(explain)?;
    let store = retrying(store, &config.s3);
    match config.version_at {
        Some(at) => Ok((Arc::new(AsOfStore::load(store, &config.fs.prefix, at).await.map_err(explain)?), account)),
        None => Ok((store, account)),
    }
}

/// The store of `s3`'s bucket, or of its account's buckets when it names none (with the
/// account, its bucket list kept for `list_ttl`).
async fn store(
    s3: &S3Config,
    creds: &CredentialsConfig,
    list_ttl: Duration,
) -> Result<(Arc<dyn ObjectStore>, Option<Arc<Account>>), String> {
    let provider = credentials::provider(creds, s3).await.map_err(|e| e.to_string())?;
    if s3.bucket.is_empty() {
        let account = Arc::new(Account::new(Arc::new(S3Buckets::new(s3, provider)), list_ttl));
        return Ok((Arc::new(AccountStore::new(account.clone())), Some(account)));
    }
    Ok((Arc::new(S3Store::new(s3, provider)), None))
}

/// The store as the daemon uses it: every attempt counted, transient failures retried.
fn retrying(store: Arc<dyn ObjectStore>, s3: &S3Config) -> Arc<dyn ObjectStore> {
    let metered = Arc::new(MeteredStore::new(store));
    Arc::new(RetryingStore::new(metered, RetryPolicy { retries: s3.retries, ..RetryPolicy::default() }))
}

/// An error of the store as one line that names the likely cause.
fn explain(s3: &S3Config, e: ObjectError) -> String {
    let (endpoint, bucket) = (&s3.endpoint, &s3.bucket);
    let account = bucket.is_empty();
    let code = e.code.clone().unwrap_or_else(|| "Forbidden".into());
    match e.kind {
        ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Interrupted => {
            format!("cannot reach endpoint {endpoint}: {}", e.message)
        }
        ErrorKind::AccessDenied if account => format!(
            "listing the buckets was denied ({code}): --all-buckets needs credentials with the s3:ListAllMyBuckets permission (or mount one bucket: xosfs BUCKET MOUNTPOINT)"
        ),
        _ if account => format!("listing the buckets at {endpoint}: {e}"),
        ErrorKind::NoSuchBucket | ErrorKind::NotFound => format!("bucket '{bucket}' does not exist at {endpoint}"),
        ErrorKind::AccessDenied => format!(
            "access to bucket '{bucket}' denied ({code}): check the access key and secret key and the bucket's permissions"
        ),
        _ => format!("bucket '{bucket}' at {endpoint}: {e}"),
    }
}

/// `xosfs cleanup`: exit 0 when every stale upload was aborted (or listed, in a dry run).
fn cleanup_main(args: CleanupArgs) -> ExitCode {
    let config = match CleanupConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xosfs: {e}");
            return ExitCode::from(2);
        }
    };
    // Only the SDK's warnings (retries, throttling); the outcome is reported below.
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xosfs: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let cutoff = SystemTime::now().checked_sub(config.older_than).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut console = cleanup::Console::new(config.dry_run);
    let result = rt.block_on(async {
        let store = retrying(store(&config.s3, &config.credentials, Duration::ZERO).await?.0, &config.s3);
        cleanup::run(&*store, &config.prefix, cutoff, config.dry_run, cleanup::MAX_UPLOADS_PER_PAGE, &mut console)
            .await
            .map_err(|e| explain(&config.s3, e))
    });
    console.finish();
    match result {
        Ok(summary) => {
            println!("{}", summary.line(&config.older_than_text, config.dry_run));
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(msg) => {
            eprintln!("xosfs: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Which store a mount's journal entries belong to.
fn store_id(s3: &S3Config) -> StoreId {
    StoreId {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        path_style: s3.path_style,
    }
}

/// `xosfs recover`: exit 0 when the listing was printed or the file published or
/// discarded.
fn recover_main(args: RecoverArgs) -> ExitCode {
    let (publish, discard) = (args.publish.clone(), args.discard.clone());
    let config = match RecoverConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xosfs: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt().with_env_filter("warn,xosfs=warn").with_writer(std::io::stderr).init();
    let journal = Journal::new(&config.cache_dir, StoreId::default());
    let found = match journal.list() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("xosfs: cannot read the journal in {}: {e}", config.cache_dir.display());
            return ExitCode::from(1);
        }
    };
    let outcome = match (publish, discard) {
        (None, None) => {
            if found.is_empty() {
                println!("no kept files in {}", journal.dir().display());
            }
            for line in recover::lines(&found) {
                println!("{line}");
            }
            Ok(String::new())
        }
        (_, Some(what)) => recover::pick(&found, &what).and_then(|f| recover::discard(&journal, &f.id)),
        (Some(what), None) => recover::pick(&found, &what).and_then(|f| publish_entry(&config, f)),
    };
    match outcome {
        Ok(line) => {
            if !line.is_empty() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("xosfs: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Connects to the entry's store and uploads it.
fn publish_entry(config: &RecoverConfig, found: &xosfs::write::journal::Found) -> Result<String, String> {
    let s = &found.record.store;
    let (s3, credentials) = config.store(&s.endpoint, &s.region, &s.bucket, s.path_style).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let client = retrying(store(&s3, &credentials, Duration::ZERO).await?.0, &s3);
        let cfg = Arc::new(WriteConfig::for_recovery(config.cache_dir.clone(), s.clone()));
        recover::publish(client, cfg, &found.id).await
    })
}

/// Makes the staging directory (private to the user) and says what an earlier run left.
/// Written data waits there: one owned by someone else, or open to group or others, is
/// refused.
fn prepare_cache_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(std::io::Error::other(format!("it is owned by uid {}, not by this user (uid {me})", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "its mode {:o} lets group or others in; make it private with chmod 700",
            meta.mode() & 0o7777
        )));
    }
    let left = std::fs::read_dir(dir)?.filter_map(Result::ok).filter(|e| e.path().is_file()).count();
    if left > 0 {
        tracing::warn!(
            "{} holds {left} staging file(s) left by a version of xosfs without a journal; they are not recovered",
            dir.display()
        );
    }
    Ok(())
}

fn init_logging(config: &Config, daemon: bool) -> std::io::Result<()> {
    use tracing_subscriber::EnvFilter;
    // Our own crate at the chosen level; every other crate, the AWS SDK included, only
    // warns: at debug and trace the SDK logs requests with their headers (Authorization
    // with its Signature=, x-amz-security-token) and STS answers with secret keys.
    // fuser's session warns when it cannot unmount what the user already unmounted.
    let filter = EnvFilter::new(format!("warn,fuser::session=error,xosfs={}", config.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &config.log_file {
        Some(path) => {
            // Log lines name keys and paths: for the user's eyes only.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).init();
        }
        // syslog stamps the time and the pid itself.
        None if daemon => builder.with_ansi(false).without_time().with_writer(daemon::Syslog::open()).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// `xosfs share PATH [--expires DURATION]`: prints the link; exit 1 when there is none,
/// 2 for a bad duration.
fn share_main(args: ShareArgs) -> ExitCode {
    let expires = match args.expires.as_deref().map(|e| xosfs::config::parse_presign_expiry("--expires", e)) {
        Some(Err(e)) => {
            eprintln!("xosfs: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(d)) => Some(d),
        None => None,
    };
    print_or_fail(share::share(&args.path, expires))
}

/// `xosfs info PATH`.
fn info_main(args: InfoArgs) -> ExitCode {
    print_or_fail(share::info(&args.path).map(|lines| lines.trim_end().to_string()))
}

fn print_or_fail(answer: Result<String, String>) -> ExitCode {
    match answer {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xosfs: {e}");
            ExitCode::from(1)
        }
    }
}
