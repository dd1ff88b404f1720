//! One validated configuration. Everything a user can get wrong on the command line is
//! checked here, before any network request or mount, with a message naming the cause.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cli::{CleanupArgs, ConnectionArgs, MountArgs, RecoverArgs};
use crate::credentials::{CredentialsConfig, RoleConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no endpoint given: pass --endpoint URL (e.g. --endpoint https://xos.example.com)")]
    MissingEndpoint,
    #[error("--max-bandwidth '{0}' is not DOWN, DOWN:UP or :UP in bytes per second above 0 (e.g. 100M:20M)")]
    Bandwidth(String),
    #[error("--metrics-addr '{0}' is not an address: give HOST:PORT with an IP address (e.g. 127.0.0.1:9109)")]
    MetricsAddr(String),
    #[error("endpoint '{0}' is not a URL with http:// or https:// in front")]
    EndpointScheme(String),
    #[error("endpoint '{url}' is not a valid URL: {reason}")]
    EndpointInvalid { url: String, reason: String },
    #[error("no mount point given: xosfs BUCKET[:/PREFIX] MOUNTPOINT, or xosfs --all-buckets MOUNTPOINT")]
    NoMountpoint,
    #[error("'{0}' is not a valid bucket name (expected BUCKET or BUCKET:/PREFIX)")]
    Bucket(String),
    #[error("prefix '{0}' is not usable: it has an empty, '.' or '..' component")]
    Prefix(String),
    #[error("{option} '{value}' is not an octal permission (e.g. 0644)")]
    Mode { option: &'static str, value: String },
    #[error("log level '{0}' is not one of error, warn, info, debug, trace")]
    LogLevel(String),
    #[error("{0} must be at least 1 second")]
    ZeroTimeout(&'static str),
    #[error("{option} '{value}' is not a size (e.g. 8M, 1G, 65536)")]
    Size { option: &'static str, value: String },
    #[error("--part-size must be between 5M and 5G (got {0})")]
    PartSize(String),
    #[error("--block-size must be between 4K and 64M (got {0})")]
    BlockSize(String),
    #[error("--cache-size ({cache}) must hold at least 4 blocks (--block-size {block})")]
    CacheSize { cache: String, block: String },
    #[error("--disk-cache-size sizes the --disk-cache DIR, and none is given")]
    DiskCacheSizeAlone,
    #[error("--disk-cache-size ({cache}) must hold at least 4 blocks (--block-size {block})")]
    DiskCacheSize { cache: String, block: String },
    #[error("{option} {value} is not a number of seconds (0 or more)")]
    Ttl { option: &'static str, value: f64 },
    #[error("--copy-threshold must be between 5M and 5G (got {0})")]
    CopyThreshold(String),
    #[error("--write-buffer ({buffer}) must hold at least one part (--part-size {part})")]
    WriteBuffer { buffer: String, part: String },
    #[error("--acl '{0}' is not a canned ACL (private, public-read, public-read-write, authenticated-read, bucket-owner-read, bucket-owner-full-control)")]
    Acl(String),
    #[error("--cache-limit ({limit} bytes) must hold at least two parts of --part-size ({part} bytes)")]
    CacheLimit { limit: u64, part: u64 },
    #[error("no cache directory: set --cache-dir, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("--role-session-name '{0}' must be 2 to 64 letters, digits or +=,.@_-")]
    RoleSessionName(String),
    #[error("--role-policy must be 1 to 2048 characters (got {0})")]
    RolePolicy(usize),
    #[error("{option} '{value}' is not a duration (a number with s, m, h or d, e.g. 30m, 24h, 7d)")]
    Duration { option: &'static str, value: String },
    #[error("{option} '{value}' must be 1s to 7d (SigV4's limit on presigned URLs)")]
    PresignExpiry { option: &'static str, value: String },
    #[error("{option} '{value}' is not a time: give RFC 3339 (2026-11-30T18:00:00Z) or local YYYY-MM-DD HH:MM[:SS]")]
    Time { option: &'static str, value: String },
}

/// The source an account mount shows in the mount table when given no label.
const DEFAULT_ACCOUNT_LABEL: &str = "xos";

/// What `--disk-cache DIR` may take when `--disk-cache-size` does not say.
const DEFAULT_DISK_CACHE_SIZE: &str = "10G";

const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

fn parse_ttl(option: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::Ttl { option, value })
}

/// How files are read.
#[derive(Debug, Clone, Copy)]
pub struct ReadSettings {
    pub block_size: u64,
    pub cache_size: u64,
    pub max_prefetch: u64,
}

/// How files are written back.
#[derive(Debug, Clone)]
pub struct WriteSettings {
    pub part_size: u64,
    pub copy_threshold: u64,
    pub concurrency: usize,
    pub buffer: u64,
    pub cache_dir: PathBuf,
    pub write_back: bool,
    pub keep_failed: Duration,
    pub cache_limit: Option<u64>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    OwnerAndRoot,
    Everyone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVersion {
    V1,
    V2,
}

/// What the object-store layer needs to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    /// Empty for an account (`--all-buckets`).
    pub bucket: String,
    pub path_style: bool,
    pub list_version: ListVersion,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Transient failures are sent again this often.
    pub retries: u32,
}

/// What the filesystem core needs: the view of the bucket and the POSIX defaults.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// "" for the whole bucket, else "a/b/" (no leading slash, one trailing slash).
    pub prefix: String,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// How long attributes and listings are trusted before asking the store again.
    pub metadata_ttl: Duration,
    /// How long the kernel trusts a name it looked up.
    pub entry_ttl: Duration,
    /// How long a name found missing is answered "no such file" without asking.
    pub negative_ttl: Duration,
    /// Bits removed from every mode shown.
    pub umask: u16,
    /// The mount point's own permission bits, when set apart from other directories.
    pub root_mode: Option<u16>,
    /// How long the URL in `user.xos.url` is valid.
    pub presign_expiry: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub s3: S3Config,
    pub fs: FsConfig,
    pub read: ReadSettings,
    pub write: WriteSettings,
    pub mountpoint: PathBuf,
    /// `--all-buckets`: every bucket of the account is mounted, under this label.
    pub account: Option<String>,
    pub credentials: CredentialsConfig,
    pub foreground: bool,
    /// Who besides the mounting user may use the mount.
    pub access: Access,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// Where metrics are served over HTTP, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub bandwidth: Bandwidth,
    /// `--version-at`: show the bucket as it was then (the mount is read-only).
    pub version_at: Option<SystemTime>,
    /// `--disk-cache DIR` and its size.
    pub disk_cache: Option<(PathBuf, u64)>,
}

/// `--max-bandwidth`: bytes per second each way, `None` for no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub down: Option<u64>,
    pub up: Option<u64>,
}

fn parse_bandwidth(value: &str) -> Result<Bandwidth, ConfigError> {
    let err = || ConfigError::Bandwidth(value.to_string());
    let (down, up) = value.split_once(':').unwrap_or((value, ""));
    let rate = |s: &str| match s {
        "" => Ok(None),
        s => parse_size("--max-bandwidth", s)
            .map_err(|_| err())
            .and_then(|r| if r > 0 { Ok(Some(r)) } else { Err(err()) }),
    };
    let bandwidth = Bandwidth { down: rate(down)?, up: rate(up)? };
    if bandwidth == Bandwidth::default() {
        return Err(err());
    }
    Ok(bandwidth)
}

/// `xosfs cleanup`: which uploads to abort, and how to reach them.
#[derive(Debug, Clone)]
pub struct CleanupConfig {
    pub s3: S3Config,
    pub credentials: CredentialsConfig,
    /// "" for the whole bucket, else "a/b/".
    pub prefix: String,
    pub older_than: Duration,
    /// --older-than as the user wrote it, for the summary.
    pub older_than_text: String,
    pub dry_run: bool,
}

impl CleanupConfig {
    pub fn from_args(args: CleanupArgs) -> Result<CleanupConfig, ConfigError> {
        let (bucket, prefix) = parse_bucket_spec(&args.bucket)?;
        let older_than = parse_duration("--older-than", &args.older_than)?;
        // Listing objects is not part of cleanup; the version only matters to a mount.
        let (s3, credentials) = connection(args.connection, bucket, ListVersion::V1)?;
        Ok(CleanupConfig {
            s3,
            credentials,
            prefix,
            older_than,
            older_than_text: args.older_than,
            dry_run: args.dry_run,
        })
    }
}

/// `xosfs recover`: the cache directory, and how to reach a kept file's store.
pub struct RecoverConfig {
    pub cache_dir: PathBuf,
    connection: ConnectionArgs,
}

impl RecoverConfig {
    pub fn from_args(args: RecoverArgs) -> Result<RecoverConfig, ConfigError> {
        Ok(RecoverConfig { cache_dir: resolve_cache_dir(args.cache_dir)?, connection: args.connection })
    }

    /// The settings to reach `bucket` at `endpoint` (a kept file's store), with the
    /// credentials found as for a mount.
    pub fn store(
        &self,
        endpoint: &str,
        region: &str,
        bucket: &str,
        path_style: bool,
    ) -> Result<(S3Config, CredentialsConfig), ConfigError> {
        let mut conn = self.connection.clone();
        conn.endpoint = Some(endpoint.to_string());
        conn.region = region.to_string();
        conn.path_style = path_style;
        connection(conn, bucket.to_string(), ListVersion::V1)
    }
}

/// --cache-dir, else the default for this user.
fn resolve_cache_dir(dir: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    match dir {
        Some(dir) => Ok(dir),
        None => default_cache_dir(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"), euid == 0)
            .ok_or(ConfigError::NoCacheDir),
    }
}

/// The validated connection and credential settings shared by a mount and `cleanup`.
fn connection(
    conn: ConnectionArgs,
    bucket: String,
    list_version: ListVersion,
) -> Result<(S3Config, CredentialsConfig), ConfigError> {
    let endpoint = validate_endpoint(conn.endpoint.as_deref())?;
    if conn.connect_timeout == 0 {
        return Err(ConfigError::ZeroTimeout("--connect-timeout"));
    }
    if conn.read_timeout == 0 {
        return Err(ConfigError::ZeroTimeout("--read-timeout"));
    }
    let role = match conn.role_arn {
        None => None,
        Some(arn) => {
            let sts_endpoint = match conn.sts_endpoint.as_deref() {
                Some(url) => validate_endpoint(Some(url))?,
                None => endpoint.clone(),
            };
            let name = &conn.role_session_name;
            let name_ok = (2..=64).contains(&name.len())
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"+=,.@_-".contains(&c));
            if !name_ok {
                return Err(ConfigError::RoleSessionName(conn.role_session_name));
            }
            if let Some(policy) = &conn.role_policy {
                let len = policy.chars().count();
                if !(1..=2048).contains(&len) {
                    return Err(ConfigError::RolePolicy(len));
                }
            }
            Some(RoleConfig {
                arn,
                sts_endpoint,
                session_name: conn.role_session_name,
                duration: Duration::from_secs(u64::from(conn.role_duration)),
                policy: conn.role_policy,
            })
        }
    };
    let s3 = S3Config {
        endpoint,
        region: conn.region,
        bucket,
        path_style: conn.path_style,
        list_version,
        connect_timeout: Duration::from_secs(conn.connect_timeout),
        read_timeout: Duration::from_secs(conn.read_timeout),
        retries: conn.retries,
    };
    Ok((s3, CredentialsConfig { passwd_file: conn.passwd_file, role }))
}

impl Config {
    pub fn from_cli(cli: MountArgs) -> Result<Config, ConfigError> {
        let (account, bucket, prefix, mountpoint) = match (cli.all_buckets, cli.mountpoint) {
            (true, None) => (Some(DEFAULT_ACCOUNT_LABEL.to_string()), String::new(), String::new(), cli.bucket.into()),
            (true, Some(mountpoint)) => (Some(cli.bucket), String::new(), String::new(), mountpoint),
            (false, Some(mountpoint)) => {
                let (bucket, prefix) = parse_bucket_spec(&cli.bucket)?;
                (None, bucket, prefix, mountpoint)
            }
            (false, None) => return Err(ConfigError::NoMountpoint),
        };
        let list_version = if cli.list_version == 2 { ListVersion::V2 } else { ListVersion::V1 };
        let (s3, credentials) = connection(cli.connection, bucket, list_version)?;
        let file_mode = parse_mode("--file-mode", &cli.file_mode)?;
        let dir_mode = parse_mode("--dir-mode", &cli.dir_mode)?;
        let log_level = cli.log_level.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(ConfigError::LogLevel(cli.log_level));
        }
        let metadata_ttl = parse_ttl("--attr-ttl", cli.attr_ttl)?;
        let entry_ttl = parse_ttl("--entry-ttl", cli.entry_ttl.unwrap_or(cli.attr_ttl))?;
        let negative_ttl = parse_ttl("--negative-ttl", cli.negative_ttl)?;
        let umask = cli.umask.as_deref().map(|m| parse_mode("--umask", m)).transpose()?.unwrap_or(0);
        let root_mode = cli.mp_umask.as_deref().map(|m| parse_mode("--mp-umask", m)).transpose()?.map(|m| 0o777 & !m);
        let part_size = parse_size("--part-size", &cli.part_size)?;
        if !(5 << 20..=5 << 30).contains(&part_size) {
            return Err(ConfigError::PartSize(cli.part_size));
        }
        let block_size = parse_size("--block-size", &cli.block_size)?;
        if !(4 << 10..=64 << 20).contains(&block_size) {
            return Err(ConfigError::BlockSize(cli.block_size));
        }
        let cache_size = parse_size("--cache-size", &cli.cache_size)?;
        if cache_size < 4 * block_size {
            return Err(ConfigError::CacheSize { cache: cli.cache_size, block: cli.block_size });
        }
        let bandwidth = cli.max_bandwidth.as_deref().map(parse_bandwidth).transpose()?.unwrap_or_default();
        // Read-ahead beyond a second's worth of the cap would only queue behind it.
        let max_prefetch = match bandwidth.down {
            Some(down) => parse_size("--max-prefetch", &cli.max_prefetch)?.min(down.max(block_size)),
            None => parse_size("--max-prefetch", &cli.max_prefetch)?,
        };
        if cli.disk_cache_size.is_some() && cli.disk_cache.is_none() {
            return Err(ConfigError::DiskCacheSizeAlone);
        }
        let disk_cache_size_given = cli.disk_cache_size.unwrap_or_else(|| DEFAULT_DISK_CACHE_SIZE.into());
        let disk_cache_size = parse_size("--disk-cache-size", &disk_cache_size_given)?;
        if disk_cache_size < 4 * block_size {
            return Err(ConfigError::DiskCacheSize { cache: disk_cache_size_given, block: cli.block_size });
        }
        let buffer = parse_size("--write-buffer", &cli.write_buffer)?;
        let copy_threshold = parse_size("--copy-threshold", &cli.copy_threshold)?;
        if !(5 << 20..=5 << 30).contains(&copy_threshold) {
            return Err(ConfigError::CopyThreshold(cli.copy_threshold));
        }
        if buffer < part_size {
            return Err(ConfigError::WriteBuffer { buffer: cli.write_buffer, part: cli.part_size });
        }
        if let Some(acl) = &cli.acl {
            if !CANNED_ACLS.contains(&acl.as_str()) {
                return Err(ConfigError::Acl(acl.clone()));
            }
        }
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let cache_dir = resolve_cache_dir(cli.cache_dir)?;
        let keep_failed = parse_duration("--keep-failed", &cli.keep_failed)?;
        let presign_expiry = parse_presign_expiry("--presign-expiry", &cli.presign_expiry)?;
        let version_at = cli.version_at.as_deref().map(|t| parse_time("--version-at", t)).transpose()?;
        let cache_limit = match &cli.cache_limit {
            Some(limit) => Some(parse_size("--cache-limit", limit)?),
            None => None,
        };
        if let Some(limit) = cache_limit.filter(|&l| l < 2 * part_size) {
            return Err(ConfigError::CacheLimit { limit, part: part_size });
        }
        Ok(Config {
            s3,
            fs: FsConfig {
                prefix,
                read_only: cli.read_only || version_at.is_some(),
                uid: cli.uid.unwrap_or(euid),
                gid: cli.gid.unwrap_or(egid),
                file_mode,
                dir_mode,
                metadata_ttl,
                entry_ttl,
                negative_ttl,
                umask,
                root_mode,
                presign_expiry,
            },
            read: ReadSettings { block_size, cache_size, max_prefetch },
            write: WriteSettings {
                part_size,
                copy_threshold,
                concurrency: usize::from(cli.upload_concurrency),
                buffer,
                cache_dir,
                write_back: cli.write_back,
                keep_failed,
                cache_limit,
                acl: cli.acl,
                storage_class: cli.storage_class,
            },
            mountpoint,
            account,
            credentials,
            foreground: cli.foreground,
            access: if cli.allow_other {
                Access::Everyone
            } else if cli.allow_root {
                Access::OwnerAndRoot
            } else {
                Access::Owner
            },
            log_level,
            log_file: cli.log_file,
            bandwidth,
            metrics_addr: cli.metrics_addr.map(|a| a.parse().map_err(|_| ConfigError::MetricsAddr(a))).transpose()?,
            version_at,
            disk_cache: cli.disk_cache.map(|dir| (dir, disk_cache_size)),
        })
    }
}

fn validate_endpoint(endpoint: Option<&str>) -> Result<String, ConfigError> {
    let raw = endpoint.ok_or(ConfigError::MissingEndpoint)?;
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(ConfigError::EndpointScheme(raw.to_string()));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| ConfigError::EndpointInvalid { url: raw.to_string(), reason: e.to_string() })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::EndpointInvalid { url: raw.to_string(), reason: "no host".into() });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::EndpointInvalid {
            url: raw.to_string(),
            reason: "a query or fragment has no place in an endpoint".into(),
        });
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// `bucket` or `bucket:/some/prefix` (the s3fs spelling) into the bucket and "some/prefix/".
fn parse_bucket_spec(spec: &str) -> Result<(String, String), ConfigError> {
    let (bucket, prefix) = match spec.split_once(':') {
        Some((b, p)) => (b, p),
        None => (spec, ""),
    };
    let valid_bucket =
        (1..=255).contains(&bucket.len()) && bucket.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c));
    if !valid_bucket {
        return Err(ConfigError::Bucket(spec.to_string()));
    }
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok((bucket.to_string(), String::new()));
    }
    if trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(ConfigError::Prefix(prefix.to_string()));
    }
    Ok((bucket.to_string(), format!("{trimmed}/")))
}

/// `$XDG_CACHE_HOME/xosfs`, else `~/.cache/xosfs`, else for root `/var/cache/xosfs`: a mount
/// from fstab at boot runs as root with neither variable set.
fn default_cache_dir(xdg_cache_home: Option<OsString>, home: Option<OsString>, root: bool) -> Option<PathBuf> {
    let xdg = xdg_cache_home.filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = home.filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"));
    let system = root.then(|| PathBuf::from("/var/cache"));
    xdg.or(home).or(system).map(|d| d.join("xosfs"))
}

/// A number of seconds, minutes, hours or days: `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(option: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError::Duration { option, value: value.to_string() };
    let v = value.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
    let num: u64 = num.parse().map_err(|_| err())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(err()),
    };
    num.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(err)
}

/// How long a presigned URL is valid: a duration of 1 second to 7 days (SigV4's longest).
pub fn parse_presign_expiry(option: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let expiry = parse_duration(option, value)?;
    if expiry.is_zero() || expiry > Duration::from_secs(7 * 86400) {
        return Err(ConfigError::PresignExpiry { option, value: value.to_string() });
    }
    Ok(expiry)
}

/// A moment as RFC 3339 (`2026-11-30T18:00:00Z`, `2026-11-30T18:00:00+08:00`) or as local
/// time `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_time(option: &'static str, value: &str) -> Result<SystemTime, ConfigError> {
    let err = || ConfigError::Time { option, value: value.to_string() };
    let v = value.trim();
    if v.len() < 16 || !v.is_char_boundary(10) || !matches!(&v[10..11], " " | "T" | "t") {
        return Err(err());
    }
    let (date, rest) = (&v[..10], &v[11..]);
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let number = |s: &str| s.parse::<i64>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let d: Vec<i64> = date.split('-').map(number).collect::<Option<_>>().ok_or_else(err)?;
    // Fractions of a second are dropped: versions are told apart to the second anyway.
    let whole = clock.split('.').next().unwrap_or_default();
    let t: Vec<i64> = whole.split(':').map(number).collect::<Option<_>>().ok_or_else(err)?;
    let (&[year, month, day], [hour, minute, rest @ ..]) = (d.as_slice(), t.as_slice()) else { return Err(err()) };
    let second = match rest {
        [] => 0,
        [s] => *s,
        _ => return Err(err()),
    };
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month) || !(1..=days_in_month).contains(&day) || *hour > 23 || *minute > 59 || second > 60 {
        return Err(err());
    }
    let secs = match zone {
        Some("Z" | "z") => utc_seconds(year, month, day, *hour, *minute, second),
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let o: Vec<i64> = offset[1..].split(':').map(number).collect::<Option<_>>().ok_or_else(err)?;
            let [oh, om] = o.as_slice() else { return Err(err()) };
            utc_seconds(year, month, day, *hour, *minute, second) - sign * (oh * 3600 + om * 60)
        }
        None => local_seconds(year, month, day, *hour, *minute, second).ok_or_else(err)?,
    };
    let since = u64::try_from(secs).map_err(|_| err())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(since))
}

/// Seconds since the epoch of a UTC date and time (days from the civil calendar).
fn utc_seconds(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// Seconds since the epoch of a local date and time, as the C library's time zone
/// rules (TZ, /etc/localtime) place it.
fn local_seconds(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    // SAFETY: an all-zero tm is valid; mktime reads and normalizes only this struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(year - 1900).ok()?;
    tm.tm_mon = (month - 1) as i32;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = minute as i32;
    tm.tm_sec = second as i32;
    // Whether daylight saving time applies is for mktime to find out.
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, initialized struct tm.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

/// Bytes, with an optional K, M, G or T suffix (powers of 1024; `MiB`/`MB` spellings too).
pub fn parse_size(option: &'static str, value: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size { option, value: value.to_string() };
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let num: u64 = num.parse().map_err(|_| err())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(err()),
    };
    num.checked_mul(1 << shift).ok_or_else(err)
}

fn parse_mode(option: &'static str, value: &str) -> Result<u16, ConfigError> {
    u16::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ConfigError::Mode { option, value: value.to_string() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bandwidth_caps_parse_each_way() {
        use super::{parse_bandwidth, Bandwidth};
        assert_eq!(parse_bandwidth("100M:20M").unwrap(), Bandwidth { down: Some(100 << 20), up: Some(20 << 20) });
        assert_eq!(parse_bandwidth("1G").unwrap(), Bandwidth { down: Some(1 << 30), up: None });
        assert_eq!(parse_bandwidth(":512K").unwrap(), Bandwidth { down: None, up: Some(512 << 10) });
        for bad in ["", ":", "0", "fast", "10M:x", "0:1M"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn endpoint_needs_a_scheme() {
        assert!(matches!(validate_endpoint(Some("xos.example.com")), Err(ConfigError::EndpointScheme(_))));
        assert!(matches!(validate_endpoint(None), Err(ConfigError::MissingEndpoint)));
        assert!(matches!(validate_endpoint(Some("http://")), Err(ConfigError::EndpointInvalid { .. })));
        assert_eq!(validate_endpoint(Some("https://h:9000/")).unwrap(), "https://h:9000");
    }

    #[test]
    fn bucket_spec_splits_the_prefix() {
        assert_eq!(parse_bucket_spec("b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_bucket_spec("b:/x/y").unwrap(), ("b".into(), "x/y/".into()));
        assert_eq!(parse_bucket_spec("b:/x/y/").unwrap(), ("b".into(), "x/y/".into()));
        assert!(parse_bucket_spec("b:/x//y").is_err());
        assert!(parse_bucket_spec("b:/x/../y").is_err());
        assert!(parse_bucket_spec("").is_err());
        assert!(parse_bucket_spec("a b").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_local() {
        let at = |s| parse_time("--version-at", s).unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(at("2026-11-30T18:00:00Z"), 1_796_061_600);
        assert_eq!(at("2026-11-30T18:00:00.250Z"), 1_796_061_600);
        assert_eq!(at("2026-11-30T18:00:00+08:00"), 1_796_061_600 - 8 * 3600);
        assert_eq!(at("2000-02-29T00:00:00-01:30"), 951_782_400 + 5400);
        // Local time is within a day of the same clock reading in UTC, whatever the zone.
        let local = at("2026-11-30 18:00") as i64;
        assert!((local - 1_796_061_600).abs() <= 14 * 3600, "{local}");
        assert_eq!(at("2026-11-30 18:00:30") as i64, local + 30);
        for bad in [
            "2026-11-30",
            "2026-13-01 00:00",
            "2026-02-29 10:00",
            "2026-11-30 25:00",
            "yesterday",
            "2026-11-30 18:00+8",
        ] {
            assert!(parse_time("--version-at", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("x", "8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("x", "256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("x", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("x", "65536").unwrap(), 65536);
        assert!(parse_size("x", "8X").is_err());
        assert!(parse_size("x", "M").is_err());
    }

    #[test]
    fn cache_dir_falls_back_to_var_cache_for_root_only() {
        let dir = |xdg: Option<&str>, home: Option<&str>, root| {
            default_cache_dir(xdg.map(OsString::from), home.map(OsString::from), root)
        };
        assert_eq!(dir(Some("/x"), Some("/h"), true), Some(PathBuf::from("/x/xosfs")));
        assert_eq!(dir(Some(""), Some("/h"), false), Some(PathBuf::from("/h/.cache/xosfs")));
        assert_eq!(dir(None, None, true), Some(PathBuf::from("/var/cache/xosfs")));
        assert_eq!(dir(None, None, false), None);
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("x", "24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("x", "7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("x", "30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("x", "0s").unwrap(), Duration::ZERO);
        for bad in ["24", "h", "1w", "-1h", "1.5h", ""] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("--file-mode", "644").unwrap(), 0o644);
        assert_eq!(parse_mode("--file-mode", "0750").unwrap(), 0o750);
        assert!(parse_mode("--file-mode", "999").is_err());
    }
}
