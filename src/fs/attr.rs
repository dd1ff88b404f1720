//! File attributes, and the s3fs-compatible user metadata they are read from
//! (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`), so both tools show a bucket alike.

use std::collections::HashMap;
use std::time::SystemTime;
#[cfg(test)]
use std::time::{Duration, UNIX_EPOCH};

use crate::config::FsConfig;
use crate::times::parse_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    /// An object whose mode says S_IFLNK and whose body is the target (s3fs's encoding).
    Symlink,
    /// A FIFO, socket or device node: an empty object whose mode carries the type
    /// (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK), as s3fs stores them; the kernel gives them
    /// their behaviour.
    Special(u32),
}

/// The attributes the core reports; the FUSE adapter turns them into wire structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Names the inode has: 1 for a file, 2 for a directory (subdirectories are not
    /// counted), 0 for a file unlinked while open.
    pub nlink: u32,
    /// The last access as stored (set explicitly: xosfs does not record reads), else mtime.
    pub atime: SystemTime,
    /// The last change of data or attributes, else mtime.
    pub ctime: SystemTime,
    /// The device a device node stands for.
    pub rdev: u32,
}

/// What identifies one version of an object, and the POSIX attributes stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    pub etag: Option<String>,
    pub posix: PosixMeta,
}

/// POSIX attributes found in user metadata; `None` where the object carries none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PosixMeta {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    /// `x-amz-meta-rdev`, as s3fs keeps it for device nodes.
    pub rdev: Option<u32>,
}

impl PosixMeta {
    /// The attributes of something made now (`mode` with its file type).
    pub fn made(mode: u32, uid: u32, gid: u32, now: SystemTime) -> PosixMeta {
        PosixMeta {
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(now),
            ctime: Some(now),
            atime: None,
            rdev: None,
        }
    }

    /// What an object with this metadata is, by the file type in its mode.
    pub fn object_kind(&self) -> Kind {
        match self.mode.map(|m| m & libc::S_IFMT) {
            Some(libc::S_IFLNK) => Kind::Symlink,
            Some(t @ (libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK)) => Kind::Special(t),
            _ => Kind::File,
        }
    }

    /// Reads s3fs's encoding: decimal numbers, times in seconds with an optional fraction.
    pub fn from_metadata(meta: &HashMap<String, String>) -> PosixMeta {
        let get = |k: &str| meta.get(k).map(|v| v.trim());
        PosixMeta {
            mode: get("mode").and_then(|v| v.parse().ok()),
            uid: get("uid").and_then(|v| v.parse().ok()),
            gid: get("gid").and_then(|v| v.parse().ok()),
            mtime: get("mtime").and_then(parse_time),
            atime: get("atime").and_then(parse_time),
            ctime: get("ctime").and_then(parse_time),
            rdev: get("rdev").and_then(|v| v.parse().ok()),
        }
    }
}

impl ObjectStat {
    /// Whether two stats describe the same object version. Some stores list no ETag, so
    /// size and modification time decide when either side lacks one.
    pub fn same_version(&self, other: &ObjectStat) -> bool {
        match (&self.etag, &other.etag) {
            (Some(a), Some(b)) => a == b,
            _ => self.size == other.size && self.last_modified == other.last_modified,
        }
    }
}

/// Attributes of an object (file or symlink) given the mount's defaults.
pub fn file_attr(ino: u64, stat: &ObjectStat, cfg: &FsConfig, fallback_time: SystemTime) -> Attr {
    let kind = stat.posix.object_kind();
    let mtime = stat.posix.mtime.or(stat.last_modified).unwrap_or(fallback_time);
    Attr {
        ino,
        kind,
        size: stat.size,
        mtime,
        atime: stat.posix.atime.unwrap_or(mtime),
        ctime: stat.posix.ctime.unwrap_or(mtime),
        perm: match kind {
            Kind::Symlink => 0o777,
            _ => stat.posix.mode.map_or(cfg.file_mode, |m| (m & 0o7777) as u16) & !cfg.umask,
        },
        uid: stat.posix.uid.unwrap_or(cfg.uid),
        gid: stat.posix.gid.unwrap_or(cfg.gid),
        nlink: 1,
        rdev: stat.posix.rdev.unwrap_or(0),
    }
}

/// Attributes of a directory: from its `dir/` marker's metadata when it has one, else the
/// mount's defaults (a bare prefix has no metadata of its own).
pub fn dir_attr(ino: u64, stat: &ObjectStat, cfg: &FsConfig, fallback_time: SystemTime) -> Attr {
    let mtime = stat.posix.mtime.or(stat.last_modified).unwrap_or(fallback_time);
    Attr {
        ino,
        kind: Kind::Directory,
        size: 4096,
        mtime,
        atime: stat.posix.atime.unwrap_or(mtime),
        ctime: stat.posix.ctime.unwrap_or(mtime),
        perm: stat.posix.mode.map_or(cfg.dir_mode, |m| (m & 0o7777) as u16) & !cfg.umask,
        uid: stat.posix.uid.unwrap_or(cfg.uid),
        gid: stat.posix.gid.unwrap_or(cfg.gid),
        nlink: 2,
        rdev: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_metadata_is_read() {
        let meta: HashMap<String, String> =
            [("mode", "33188"), ("uid", "1000"), ("gid", "100"), ("mtime", "1700000000.5")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let p = PosixMeta::from_metadata(&meta);
        assert_eq!(p.mode, Some(0o100644));
        assert_eq!((p.uid, p.gid), (Some(1000), Some(100)));
        assert_eq!(p.mtime, Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)));
    }

    #[test]
    fn stored_times_are_read_with_their_fractions() {
        let meta: HashMap<String, String> = [("mtime", "1600000000.123456789"), ("atime", "5.5"), ("ctime", "6")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = PosixMeta::from_metadata(&meta);
        assert_eq!(p.mtime, Some(UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789)));
        assert_eq!(
            (p.atime, p.ctime),
            (Some(UNIX_EPOCH + Duration::new(5, 500_000_000)), Some(UNIX_EPOCH + Duration::from_secs(6)))
        );
    }

    #[test]
    fn garbage_metadata_falls_back_to_defaults() {
        let meta: HashMap<String, String> =
            [("mode", "rwx"), ("mtime", "-3")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(PosixMeta::from_metadata(&meta), PosixMeta::default());
    }

    #[test]
    fn versions_compare_by_etag_else_size_and_time() {
        let t = Some(UNIX_EPOCH);
        let a = ObjectStat { size: 1, last_modified: t, etag: Some("x".into()), ..Default::default() };
        let b = ObjectStat { size: 2, last_modified: None, etag: Some("x".into()), ..Default::default() };
        assert!(a.same_version(&b));
        let c = ObjectStat { size: 1, last_modified: t, etag: None, ..Default::default() };
        assert!(a.same_version(&c));
        let d = ObjectStat { size: 3, last_modified: t, etag: None, ..Default::default() };
        assert!(!a.same_version(&d));
    }
}
