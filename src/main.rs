//! `xosfs [OPTIONS] BUCKET[:/PREFIX] MOUNTPOINT`: parse, check, daemonize, mount, serve.
//!
//! Exit codes: 0 mounted (or served and unmounted cleanly), 1 start-up or runtime failure,
//! 2 invalid command line or option.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use xosfs::config::Config;
use xosfs::daemon::{self, StartupReport};
use xosfs::fs::{Fs, UploadDefaults};
use xosfs::mount::{self, MountSpec};
use xosfs::s3::{ObjectClient, ObjectError};
use xosfs::write::WriteConfig;
use xosfs::{cli, credentials};

fn main() -> ExitCode {
    let (args, helper) = cli::helper_args(std::env::args_os().collect::<Vec<OsString>>());
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mut config = match Config::from_cli(cli) {
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
    for path in [&mut config.passwd_file, &mut config.log_file].into_iter().flatten() {
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
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid command line");
    eprintln!("xosfs: {} (see xosfs --help)", first.trim_start_matches("error: "));
    ExitCode::from(2)
}

fn run(config: Config, report: StartupReport) -> ExitCode {
    if let Err(e) = init_logging(&config, report.is_daemon()) {
        report.failed(&format!("cannot open log file: {e}"));
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report.failed(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let client = match rt.block_on(connect(&config)) {
        Ok(c) => Arc::new(c),
        Err(msg) => {
            report.failed(&msg);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = prepare_cache_dir(&config.write.cache_dir) {
        report.failed(&format!("cannot use cache directory {}: {e}", config.write.cache_dir.display()));
        return ExitCode::from(1);
    }
    let w = &config.write;
    let write_cfg =
        Arc::new(WriteConfig::new(w.part_size, w.concurrency, w.buffer, w.cache_dir.clone(), w.copy_threshold));
    let defaults = UploadDefaults { acl: w.acl.clone(), storage_class: w.storage_class.clone() };
    let fs = Arc::new(Fs::new(client, config.fs.clone(), write_cfg, defaults, config.read));
    let fs_name = match config.fs.prefix.as_str() {
        "" => config.s3.bucket.clone(),
        p => format!("{}:/{}", config.s3.bucket, p.trim_end_matches('/')),
    };
    let spec =
        MountSpec { mountpoint: &config.mountpoint, fs_name, read_only: config.fs.read_only, access: config.access };
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
    match mounted.serve_until_stopped(&rt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the session ended with an error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Credentials, then HeadBucket and one listing of the prefix: every way the settings can
/// be wrong shows up here as one line, before anything is mounted.
async fn connect(config: &Config) -> Result<ObjectClient, String> {
    let provider =
        credentials::provider(config.passwd_file.as_deref(), &config.s3.bucket).await.map_err(|e| e.to_string())?;
    let client = ObjectClient::new(&config.s3, provider);
    let endpoint = &config.s3.endpoint;
    let bucket = &config.s3.bucket;
    let explain = |e: ObjectError| {
        match e {
        ObjectError::NoSuchBucket | ObjectError::NotFound => format!("bucket '{bucket}' does not exist at {endpoint}"),
        ObjectError::AccessDenied { code, .. } => format!(
            "access to bucket '{bucket}' denied ({code}): check the access key and secret key and the bucket's permissions"
        ),
        ObjectError::Unreachable(why) | ObjectError::Timeout(why) => format!("cannot reach endpoint {endpoint}: {why}"),
        other => format!("bucket '{bucket}' at {endpoint}: {other}"),
    }
    };
    client.head_bucket().await.map_err(explain)?;
    client.list_page(&config.fs.prefix, None, 1).await.map_err(explain)?;
    Ok(client)
}

/// Makes the staging directory (private to the user) and says what an earlier run left.
fn prepare_cache_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let left = std::fs::read_dir(dir)?.filter_map(Result::ok).filter(|e| e.path().is_file()).count();
    if left > 0 {
        tracing::warn!(
            "{} holds {left} staging file(s) from uploads that failed or were interrupted; they are kept for recovery",
            dir.display()
        );
    }
    Ok(())
}

fn init_logging(config: &Config, daemon: bool) -> std::io::Result<()> {
    use tracing_subscriber::EnvFilter;
    // Our own crate at the chosen level; the SDK only warns, so no request dumps (and no
    // signatures) reach the log.
    // fuser's session warns when it cannot unmount what the user already unmounted.
    let filter = EnvFilter::new(format!("warn,fuser::session=error,xosfs={}", config.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &config.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).init();
        }
        None if daemon => builder.with_writer(std::io::sink).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
