//! The command line: clap definitions, and the `-o a,b=c` option list folded into the same
//! flags so that both spellings reach one parser and one set of checks.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// Mount a CTYun XOS (or any S3-compatible) bucket as a directory.
#[derive(Debug, Parser)]
#[command(
    name = "xosfs",
    version,
    args_override_self = true,
    after_help = "Every option may also be given as -o NAME[=VALUE] with _ for - \
                  (-o endpoint=https://…,path_style,read_only), as in fstab."
)]
pub struct Cli {
    /// The bucket, optionally with a prefix to mount instead of the whole bucket.
    #[arg(value_name = "BUCKET[:/PREFIX]")]
    pub bucket: String,

    /// The directory to mount on; it must exist and not be a mount point already.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Endpoint URL of the service, with its scheme (e.g. https://xos.example.com).
    #[arg(long, value_name = "URL", env = "XOSFS_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Region used for signing requests.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub region: String,

    /// Address the bucket in the path (http://host/bucket/key) instead of the host name.
    #[arg(long)]
    pub path_style: bool,

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

    /// Seconds to wait for a connection to the endpoint.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    pub connect_timeout: u64,

    /// Seconds to wait for data on an open connection.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    pub read_timeout: u64,

    /// Credentials file in s3fs's format: lines of ACCESS_KEY:SECRET_KEY or
    /// BUCKET:ACCESS_KEY:SECRET_KEY; it must not be readable by group or others.
    /// Without it the AWS environment variables and shared profile files are used.
    #[arg(long, value_name = "FILE")]
    pub passwd_file: Option<PathBuf>,

    /// Seconds that attributes, names and listings are trusted before the store is asked
    /// again (also the kernel's cache time); changes by other clients show after this.
    #[arg(long, value_name = "SECONDS", default_value = "1")]
    pub attr_ttl: f64,

    /// Size of the blocks reads are cached in (4K to 64M). Suffixes K, M, G.
    #[arg(long, value_name = "SIZE", default_value = "1M")]
    pub block_size: String,

    /// Memory for cached blocks and read-ahead of the whole mount (at least 4 blocks);
    /// least recently used blocks make room.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub cache_size: String,

    /// Largest read-ahead window of one open file; windows grow from one block to this while a
    /// file is read sequentially, and shrink when --cache-size has no room.
    #[arg(long, value_name = "SIZE", default_value = "128M")]
    pub max_prefetch: String,

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
    /// else ~/.cache/xosfs]. Needs room for the files open for writing.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Canned ACL for new objects: private, public-read, public-read-write,
    /// authenticated-read, bucket-owner-read or bucket-owner-full-control [default: the bucket's].
    #[arg(long, value_name = "ACL")]
    pub acl: Option<String>,

    /// Storage class for new objects (e.g. STANDARD, STANDARD_IA) [default: the bucket's].
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Append logs to this file (a daemon otherwise discards them; --foreground logs to stderr).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

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

/// Parses argv, with every `-o` item turned into the long flag it names.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let first = Cli::try_parse_from(&args)?;
    if first.options.is_empty() {
        return Ok(first);
    }
    let mut expanded: Vec<OsString> = args[..1].to_vec();
    for item in first.options.iter().flat_map(|o| o.split(',')).filter(|s| !s.is_empty()) {
        if let Some(flag) = option_to_flag(item)? {
            expanded.push(flag.into());
        }
    }
    // Explicit flags come last so that they win over -o, as users expect.
    expanded.extend(args.into_iter().skip(1));
    let mut cli = Cli::try_parse_from(expanded)?;
    cli.options.clear();
    Ok(cli)
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
    let cmd = Cli::command();
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
    Cli::command().error(clap::error::ErrorKind::InvalidValue, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn dash_o_sets_the_same_fields_as_flags() {
        let cli = parse(argv("xosfs b /mnt -o endpoint=http://h:1,path_style,ro,uid=7,_netdev")).unwrap();
        assert_eq!(cli.endpoint.as_deref(), Some("http://h:1"));
        assert!(cli.path_style && cli.read_only);
        assert_eq!(cli.uid, Some(7));
    }

    #[test]
    fn s3fs_aliases_are_accepted() {
        let cli = parse(argv("xosfs b /mnt -o url=http://h:1,use_path_request_style")).unwrap();
        assert_eq!(cli.endpoint.as_deref(), Some("http://h:1"));
        assert!(cli.path_style);
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
        let cli = parse(argv("xosfs b /mnt -o region=a --region b")).unwrap();
        assert_eq!(cli.region, "b");
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
