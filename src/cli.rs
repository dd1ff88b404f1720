//! The command line: clap definitions, and the `-o a,b=c` option list folded into the same
//! flags so that both spellings reach one parser and one set of checks.
//!
//! `xosfs BUCKET MOUNTPOINT` mounts; `xosfs cleanup`, `recover`, `share`, `info` and
//! `completions` are subcommands. A bucket literally named like a subcommand is mounted as `cleanup:/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Subcommand};

/// The whole command line: the mount's arguments and options, or a subcommand. Built by
/// hand because a mount's BUCKET and MOUNTPOINT are required only without a subcommand.
pub fn command() -> clap::Command {
    let cmd = clap::Command::new("xosfs")
        .version(env!("CARGO_PKG_VERSION"))
        .args_override_self(true)
        .args_conflicts_with_subcommands(true)
        .subcommand_negates_reqs(true)
        .after_help(
            "Every option may also be given as -o NAME[=VALUE] with _ for - \
             (-o endpoint=https://…,path_style,read_only), as in fstab.",
        );
    // After the mount's arguments, whose documentation would otherwise become the about.
    let cmd = MountArgs::augment_args(cmd)
        .about("Mount a CTYun XOS (or any S3-compatible) bucket, or every bucket of an account, as a directory");
    Command::augment_subcommands(cmd)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Abort unfinished multipart uploads started more than --older-than ago.
    Cleanup(Box<CleanupArgs>),
    /// List, upload or discard the files the cache directory kept: uploads that failed,
    /// and files still open when a daemon died.
    Recover(Box<RecoverArgs>),
    /// Print what the daemon of the xosfs mount at MOUNTPOINT is doing: requests, errors,
    /// bytes, cache, uploads pending (read from its control socket).
    Stats(Box<StatsArgs>),
    /// Print a link anyone can download the file PATH (inside a mounted xosfs) with.
    Share(ShareArgs),
    /// Print what XOS keeps of the file PATH (inside a mounted xosfs): key, ETag, version,
    /// size, storage class, Content-Type, tags and ACL.
    Info(InfoArgs),
    /// Print a completion script for SHELL on stdout.
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Mount(Box<MountArgs>),
    Cleanup(Box<CleanupArgs>),
    Recover(Box<RecoverArgs>),
    Stats(Box<StatsArgs>),
    Share(ShareArgs),
    Info(InfoArgs),
    Completions(clap_complete::Shell),
}

/// `xosfs share`: which file, for how long.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// A file inside a mounted xosfs.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// How long the link works: a number with s, m, h or d, at most 7d (SigV4's limit)
    /// [default: the mount's --presign-expiry].
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
}

/// `xosfs info`: which file.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A file or directory inside a mounted xosfs.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// How to reach the bucket and with which keys: the same for a mount and for `cleanup`.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Endpoint URL of the service, with its scheme (e.g. https://xos.example.com).
    #[arg(long, value_name = "URL", env = "XOSFS_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Region used for signing requests.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub region: String,

    /// Address the bucket in the path (http://host/bucket/key) instead of the host name.
    #[arg(long)]
    pub path_style: bool,

    /// Seconds to wait for a connection to the endpoint.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    pub connect_timeout: u64,

    /// Seconds to wait for data on an open connection.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    pub read_timeout: u64,

    /// How often a request the store failed transiently (throttling, 5xx, timeouts,
    /// broken connections) is sent again, with exponential backoff and jitter.
    #[arg(long, value_name = "N", default_value = "10")]
    pub retries: u32,

    /// Credentials file in s3fs's format: lines of ACCESS_KEY:SECRET_KEY or
    /// BUCKET:ACCESS_KEY:SECRET_KEY; it must not be readable by group or others.
    /// Without it: $XOSFS_PASSWD_FILE, ~/.passwd-xosfs, /etc/passwd-xosfs, then the AWS
    /// environment variables and shared profile files.
    #[arg(long, value_name = "FILE")]
    pub passwd_file: Option<PathBuf>,

    /// Assume this role with STS AssumeRole and use its temporary credentials, renewed
    /// before they expire; the keys found as usual sign the AssumeRole call.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// URL of the STS service [default: the --endpoint URL].
    #[arg(long, value_name = "URL", requires = "role_arn")]
    pub sts_endpoint: Option<String>,

    /// Session name sent with AssumeRole (2 to 64 characters).
    #[arg(long, value_name = "NAME", default_value = "xosfs")]
    pub role_session_name: String,

    /// Lifetime asked for each set of temporary credentials (900 to 43200).
    #[arg(long, value_name = "SECONDS", default_value = "3600",
          value_parser = clap::value_parser!(u32).range(900..=43200))]
    pub role_duration: u32,

    /// Session policy (JSON) sent with AssumeRole; the session may do only what both the
    /// role and this policy allow.
    #[arg(long, value_name = "JSON", requires = "role_arn")]
    pub role_policy: Option<String>,
}

/// `xosfs cleanup`: what to clean and how to reach it.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The bucket, optionally with a prefix: only uploads of keys below it are considered.
    #[arg(value_name = "BUCKET[:/PREFIX]")]
    pub bucket: String,

    /// Abort only uploads started longer ago than this: a number with s, m, h or d
    /// (30m, 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub older_than: String,

    /// List the uploads that would be aborted, and abort none.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `xosfs recover`: what to do with the files the cache directory kept.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// List the kept files (what `recover` does without --publish or --discard).
    #[arg(long, conflicts_with_all = ["publish", "discard"])]
    pub list: bool,

    /// Upload the kept file PATH (its key, or its entry id, as --list shows them) over the
    /// object. The object's endpoint and bucket come from the entry; the credentials are
    /// found as for a mount. If the object changed since the file was opened, the data is
    /// stored under a conflict name instead.
    #[arg(long, value_name = "PATH", conflicts_with = "discard")]
    pub publish: Option<String>,

    /// Delete the kept file PATH from the cache directory.
    #[arg(long, value_name = "PATH")]
    pub discard: Option<String>,

    /// The cache directory [default: as for a mount].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `xosfs stats`: which mount, and how often.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Where the xosfs filesystem is mounted.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Print again every 2 seconds, with the rates since the last print, until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// Mounting: `xosfs [OPTIONS] BUCKET[:/PREFIX] MOUNTPOINT`, or a whole account with
/// `xosfs --all-buckets [OPTIONS] [LABEL] MOUNTPOINT`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The bucket, optionally with a prefix to mount instead of the whole bucket. With
    /// --all-buckets, an optional label shown as the mount's source (fstab's first field).
    #[arg(value_name = "BUCKET[:/PREFIX]", required = true)]
    pub bucket: String,

    /// The directory to mount on; it must exist and not be a mount point already.
    #[arg(value_name = "MOUNTPOINT", required_unless_present = "all_buckets")]
    pub mountpoint: Option<PathBuf>,

    /// Mount every bucket of the account: the top-level directories are the buckets
    /// (ListBuckets), mkdir there creates a bucket and rmdir deletes an empty one.
    #[arg(long, conflicts_with = "version_at")]
    pub all_buckets: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// ListObjects version: 1 (Marker paging, what XOS documents) or 2 (continuation tokens).
    #[arg(long, value_name = "1|2", default_value = "1", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub list_version: u8,

    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf when not root).
    #[arg(long)]
    pub allow_other: bool,

    /// Let root access the mount as well as the mounting user.
    #[arg(long, conflicts_with = "allow_other")]
    pub allow_root: bool,

    /// Stay in the foreground and log to stderr instead of becoming a daemon.
    #[arg(short, long)]
    pub foreground: bool,

    /// Owner of files and directories that carry no owner metadata [default: the mounting user].
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,

    /// Group of files and directories that carry no group metadata [default: the mounting group].
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,

    /// Permission bits (octal) of files that carry no mode metadata.
    #[arg(long, value_name = "OCTAL", default_value = "0644")]
    pub file_mode: String,

    /// Permission bits (octal) of directories that carry no mode metadata.
    #[arg(long, value_name = "OCTAL", default_value = "0755")]
    pub dir_mode: String,

    /// Seconds that attributes and directory listings are trusted before the store is asked
    /// again (also the kernel's cache time); changes by other clients show after this.
    /// Long enough that `ls -l` of a big directory over a slow link finds every entry's
    /// attributes still fresh from the listing.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub attr_ttl: f64,

    /// Seconds that names found in a directory are trusted by the kernel before it looks
    /// them up again [default: the --attr-ttl value].
    #[arg(long, value_name = "SECONDS")]
    pub entry_ttl: Option<f64>,

    /// Seconds that "no such file" is remembered, so repeated probes for missing names
    /// (.hidden, desktop.ini, thumbnails) cost no requests; creating the name through this
    /// mount ends it at once.
    #[arg(long, value_name = "SECONDS", default_value = "5")]
    pub negative_ttl: f64,

    /// Permission bits (octal) removed from the mode of every file and directory, as s3fs's
    /// umask (e.g. 0022) [default: none].
    #[arg(long, value_name = "OCTAL")]
    pub umask: Option<String>,

    /// Mode of the mount point itself is 0777 without these bits (octal), as s3fs's mp_umask
    /// [default: like any other directory].
    #[arg(long, value_name = "OCTAL")]
    pub mp_umask: Option<String>,

    /// Size of the blocks reads are cached in (4K to 64M). Suffixes K, M, G.
    #[arg(long, value_name = "SIZE", default_value = "1M")]
    pub block_size: String,

    /// Memory for cached blocks and read-ahead of the whole mount (at least 4 blocks);
    /// least recently used blocks make room.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub cache_size: String,

    /// Largest read-ahead window of one open file; a window grows with what the reader has
    /// consumed (plus one block from offset 0) up to this, and shrinks when --cache-size has
    /// no room.
    #[arg(long, value_name = "SIZE", default_value = "128M")]
    pub max_prefetch: String,

    /// Cap on the bytes per second the mount receives (object bodies) and, after a colon,
    /// sends (upload bodies): 100M, 100M:20M, :20M. Suffixes K, M, G (powers of 1024). The
    /// read-ahead window is held to about a second's worth of the cap [default: none].
    #[arg(long, value_name = "DOWN[:UP]")]
    pub max_bandwidth: Option<String>,

    /// Keep read blocks in this directory too, across remounts: a re-read after a remount
    /// comes from the disk, not the store [default: no disk cache]. One daemon per
    /// directory.
    #[arg(long, value_name = "DIR")]
    pub disk_cache: Option<PathBuf>,

    /// Disk the --disk-cache directory may take; least recently used blocks make room.
    /// Suffixes K, M, G [default: 10G].
    #[arg(long, value_name = "SIZE")]
    pub disk_cache_size: Option<String>,

    /// Size of multipart upload parts (grows every 1,000 parts; 5M to 5G). Suffixes K, M, G.
    #[arg(long, value_name = "SIZE", default_value = "8M")]
    pub part_size: String,

    /// Parts of one file uploaded at the same time.
    #[arg(long, value_name = "N", default_value = "8", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub upload_concurrency: u16,

    /// Memory all writers together may hold in part bodies; writers wait when it is spent.
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub write_buffer: String,

    /// Objects larger than this are copied (on rename) part by part on the server with
    /// UploadPartCopy, in parts of this size; smaller ones with one CopyObject (5M to 5G).
    #[arg(long, value_name = "SIZE", default_value = "5G")]
    pub copy_threshold: String,

    /// Directory for staging files of files being written [default: $XDG_CACHE_HOME/xosfs,
    /// else ~/.cache/xosfs, else (root without HOME, as at boot) /var/cache/xosfs]. Needs
    /// room for the files open for writing.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Disk the staging files in the cache directory may take, at least two parts
    /// [default: only the disk limits it]. Writers wait for room while uploads free some,
    /// and get ENOSPC when none can be freed. Suffixes K, M, G.
    #[arg(long, value_name = "SIZE")]
    pub cache_limit: Option<String>,

    /// Return from close(2) once the file is durable in the cache directory, and upload it
    /// in the background (at most 16 files at once, in order per file); fsync(2) still
    /// waits for the store, and unmounting waits for every upload. A file closed before a
    /// crash is uploaded by the next mount with the same cache directory.
    #[arg(long)]
    pub write_back: bool,

    /// Remove files the cache directory kept (an upload failed and its writer was told,
    /// or the file was open when the daemon died) after this long: a number with s, m, h
    /// or d.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub keep_failed: String,

    /// Canned ACL for new objects: private, public-read, public-read-write,
    /// authenticated-read, bucket-owner-read or bucket-owner-full-control [default: the bucket's].
    #[arg(long, value_name = "ACL")]
    pub acl: Option<String>,

    /// Storage class for new objects (e.g. STANDARD, STANDARD_IA) [default: the bucket's].
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// How long the presigned URL in a file's user.xos.url attribute is valid: a number
    /// with s, m, h or d, at most 7d (SigV4's limit).
    #[arg(long, value_name = "DURATION", default_value = "3600s")]
    pub presign_expiry: String,

    /// Mount a versioned bucket read-only as it was at TIME: RFC 3339
    /// (2026-11-30T18:00:00Z) or local time as YYYY-MM-DD HH:MM[:SS]. Each key shows its
    /// newest version stored at or before TIME (none when that is a delete marker).
    #[arg(long, value_name = "TIME")]
    pub version_at: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Append logs to this file (else a daemon logs to syslog, facility daemon, and
    /// --foreground to stderr).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Serve metrics in the Prometheus text format over HTTP on this address (any path),
    /// e.g. 127.0.0.1:9109 [default: none; `xosfs stats` works without it].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Mount options, comma separated: any option above by name, plus the generic ones
    /// mount(8) passes (_netdev, nofail, rw, ro, ...).
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
}

/// Options mount(8) and fstab pass along that mean nothing to the daemon itself.
const IGNORED_MOUNT_OPTIONS: &[&str] = &[
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "defaults",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "nodiratime",
    "sync",
    "async",
];

/// s3fs names for our options, so an s3fs fstab line keeps working.
const OPTION_ALIASES: &[(&str, &str)] =
    &[("url", "endpoint"), ("use_path_request_style", "path_style"), ("ro", "read_only"), ("default_acl", "acl")];

/// What mount(8) asked of a `mount.xosfs` helper beyond the mount itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HelperFlags {
    /// `-f`: check everything, mount nothing.
    pub fake: bool,
}

/// mount(8) runs `mount.xosfs SPEC DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`. Its `-f` (fake)
/// is not our `--foreground`, and `-s`, `-n`, `-v`, `-t` mean nothing to us, so they are
/// taken out before the common parser sees the rest.
pub fn helper_args(args: Vec<OsString>) -> (Vec<OsString>, HelperFlags) {
    let invoked_as_helper = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("mount.xosfs"));
    if !invoked_as_helper {
        return (args, HelperFlags::default());
    }
    let mut flags = HelperFlags::default();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-t") | Some("-N") => {
                it.next();
            }
            Some(a) if a.starts_with('-') && a.len() > 1 && a[1..].chars().all(|c| "sfnv".contains(c)) => {
                flags.fake |= a.contains('f');
            }
            _ => out.push(arg),
        }
    }
    (out, flags)
}

/// Parses argv, with every `-o` item of a mount turned into the long flag it names.
pub fn parse(args: Vec<OsString>) -> Result<Invocation, clap::Error> {
    let first = match invocation(command().try_get_matches_from(&args)?)? {
        Invocation::Mount(m) if !m.options.is_empty() => m,
        other => return Ok(other),
    };
    let mut expanded: Vec<OsString> = args[..1].to_vec();
    for item in first.options.iter().flat_map(|o| o.split(',')).filter(|s| !s.is_empty()) {
        if let Some(flag) = option_to_flag(item)? {
            expanded.push(flag.into());
        }
    }
    // Explicit flags come last so that they win over -o, as users expect.
    expanded.extend(args.into_iter().skip(1));
    match invocation(command().try_get_matches_from(expanded)?)? {
        Invocation::Mount(mut m) => {
            m.options.clear();
            Ok(Invocation::Mount(m))
        }
        other => Ok(other),
    }
}

fn invocation(matches: ArgMatches) -> Result<Invocation, clap::Error> {
    if matches.subcommand().is_none() {
        return Ok(Invocation::Mount(Box::new(MountArgs::from_arg_matches(&matches)?)));
    }
    Ok(match Command::from_arg_matches(&matches)? {
        Command::Cleanup(args) => Invocation::Cleanup(args),
        Command::Recover(args) => Invocation::Recover(args),
        Command::Stats(args) => Invocation::Stats(args),
        Command::Share(args) => Invocation::Share(args),
        Command::Info(args) => Invocation::Info(args),
        Command::Completions { shell } => Invocation::Completions(shell),
    })
}

/// `name=value` -> `--name=value`, checking that the option exists and whether it takes a value.
fn option_to_flag(item: &str) -> Result<Option<String>, clap::Error> {
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (item, None),
    };
    if IGNORED_MOUNT_OPTIONS.contains(&name) || name.starts_with("x-") || name == "comment" {
        return Ok(None);
    }
    let name = OPTION_ALIASES.iter().find(|(a, _)| *a == name).map_or(name, |(_, n)| n);
    let long = name.replace('_', "-");
    let cmd = command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()) && long != "help" && long != "version")
        .ok_or_else(|| invalid(format!("unknown mount option '{name}'")))?;
    let takes_value = arg.get_action().takes_values();
    match (takes_value, value) {
        (true, Some(v)) => Ok(Some(format!("--{long}={v}"))),
        (true, None) => Err(invalid(format!("mount option '{name}' needs a value ({name}=...)"))),
        (false, None) => Ok(Some(format!("--{long}"))),
        (false, Some(_)) => Err(invalid(format!("mount option '{name}' takes no value"))),
    }
}

fn invalid(msg: String) -> clap::Error {
    command().error(clap::error::ErrorKind::InvalidValue, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn mount(s: &str) -> MountArgs {
        match parse(argv(s)).unwrap() {
            Invocation::Mount(m) => *m,
            other => panic!("expected a mount, got {other:?}"),
        }
    }

    #[test]
    fn dash_o_sets_the_same_fields_as_flags() {
        let cli = mount("xosfs b /mnt -o endpoint=http://h:1,path_style,ro,uid=7,_netdev");
        assert_eq!(cli.connection.endpoint.as_deref(), Some("http://h:1"));
        assert!(cli.connection.path_style && cli.read_only);
        assert_eq!(cli.uid, Some(7));
    }

    #[test]
    fn s3fs_aliases_are_accepted() {
        let cli = mount("xosfs b /mnt -o url=http://h:1,use_path_request_style");
        assert_eq!(cli.connection.endpoint.as_deref(), Some("http://h:1"));
        assert!(cli.connection.path_style);
    }

    #[test]
    fn s3fs_umask_names_set_the_umask_flags() {
        let cli = mount("xosfs b /mnt -o umask=0022,mp_umask=0077");
        assert_eq!(cli.umask.as_deref(), Some("0022"));
        assert_eq!(cli.mp_umask.as_deref(), Some("0077"));
    }

    #[test]
    fn subcommands_and_a_bucket_named_like_one() {
        let Invocation::Cleanup(c) =
            parse(argv("xosfs cleanup b:/p --older-than 7d --dry-run --endpoint http://h:1 --passwd-file f")).unwrap()
        else {
            panic!("expected cleanup")
        };
        assert_eq!((c.bucket.as_str(), c.older_than.as_str(), c.dry_run), ("b:/p", "7d", true));
        assert_eq!(c.connection.endpoint.as_deref(), Some("http://h:1"));
        assert!(matches!(
            parse(argv("xosfs completions zsh")).unwrap(),
            Invocation::Completions(clap_complete::Shell::Zsh)
        ));
        assert_eq!(mount("xosfs cleanup:/ /mnt").bucket, "cleanup:/");
        assert!(parse(argv("xosfs completions tcsh")).is_err());
        assert!(parse(argv("xosfs b")).is_err());
    }

    #[test]
    fn role_options_need_a_role() {
        let cli = mount("xosfs b /mnt --role-arn arn:aws:iam::role/r --role-policy {}");
        assert_eq!(cli.connection.role_arn.as_deref(), Some("arn:aws:iam::role/r"));
        assert_eq!((cli.connection.role_session_name.as_str(), cli.connection.role_duration), ("xosfs", 3600));
        assert!(parse(argv("xosfs b /mnt --role-policy {}")).is_err());
        assert!(parse(argv("xosfs b /mnt --role-arn a --role-duration 60")).is_err());
    }

    #[test]
    fn mount_helper_flags_are_taken_out() {
        let (args, flags) = helper_args(argv("/sbin/mount.xosfs b /mnt -sfv -o ro,url=http://h:1 -t xosfs"));
        assert!(flags.fake);
        assert_eq!(args, argv("/sbin/mount.xosfs b /mnt -o ro,url=http://h:1"));
        let (args, flags) = helper_args(argv("xosfs b /mnt -f"));
        assert!(!flags.fake);
        assert_eq!(args, argv("xosfs b /mnt -f"));
    }

    #[test]
    fn explicit_flags_win_over_dash_o() {
        let cli = mount("xosfs b /mnt -o region=a --region b");
        assert_eq!(cli.connection.region, "b");
    }

    #[test]
    fn unknown_or_malformed_options_are_errors_naming_the_option() {
        let err = parse(argv("xosfs b /mnt -o bogus=1")).unwrap_err().to_string();
        assert!(err.contains("unknown mount option 'bogus'"), "{err}");
        let err = parse(argv("xosfs b /mnt -o path_style=yes")).unwrap_err().to_string();
        assert!(err.contains("'path_style' takes no value"), "{err}");
        let err = parse(argv("xosfs b /mnt -o region")).unwrap_err().to_string();
        assert!(err.contains("'region' needs a value"), "{err}");
    }
}
