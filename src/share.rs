//! `xosfs share PATH` and `xosfs info PATH`: for a file inside a mounted xosfs, found in
//! the mount table and read through the mount's `user.xos.*` attributes. The daemon holds
//! the credentials and signs; any user who can read the file can share it, with no keys.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A path inside a mounted xosfs.
#[derive(Debug, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub mountpoint: PathBuf,
    pub bucket: String,
    /// The object key (with a trailing `/` for a directory).
    pub key: String,
}

/// Finds the xosfs mount `path` is in, and its key there.
pub fn locate(path: &Path) -> Result<Located, String> {
    let abs = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("cannot read the mount table: {e}"))?;
    let (mountpoint, source) =
        innermost_mount(&table, &abs).ok_or_else(|| format!("{} is not inside a mounted xosfs", path.display()))?;
    let relative = abs.strip_prefix(&mountpoint).unwrap_or(Path::new("")).to_string_lossy().into_owned();
    let (bucket, mut key) = match (source.ends_with(":*"), source.split_once(":/")) {
        // An account mount (`LABEL:*`): the first component is the bucket.
        (true, _) => match relative.split_once('/') {
            Some((bucket, key)) => (bucket.to_string(), key.to_string()),
            None => (relative, String::new()),
        },
        (false, Some((bucket, prefix))) => (bucket.to_string(), format!("{}/{relative}", prefix.trim_end_matches('/'))),
        (false, None) => (source.clone(), relative),
    };
    if abs.is_dir() && !key.is_empty() && !key.ends_with('/') {
        key.push('/');
    }
    Ok(Located { path: abs, mountpoint, bucket, key })
}

/// The deepest FUSE mount of xosfs that holds `path`: its mount point and source
/// (`BUCKET`, `BUCKET:/PREFIX` or an account's `LABEL:*`). A mount made by root without fusermount has the type
/// `fuse` without the subtype, so plain `fuse` mounts count too; the attributes read then
/// tell whether it is one.
fn innermost_mount(table: &str, path: &Path) -> Option<(PathBuf, String)> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let (fstype, source) = (*fields.get(dash + 1)?, *fields.get(dash + 2)?);
            if fstype != "fuse.xosfs" && fstype != "fuse" {
                return None;
            }
            let mountpoint = PathBuf::from(unescape(fields.get(4)?));
            path.starts_with(&mountpoint).then(|| (mountpoint, unescape(source)))
        })
        .max_by_key(|(mountpoint, _)| mountpoint.as_os_str().len())
}

/// The mount table's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of xattr `name` of `path`, `None` when it has none.
fn xattr(path: &Path, name: &str) -> std::io::Result<Option<String>> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_name = CString::new(name)?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(c_path.as_ptr(), c_name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// A presigned URL of the file at `path`, valid for `expires` (else the mount's
/// --presign-expiry).
pub fn share(path: &Path, expires: Option<Duration>) -> Result<String, String> {
    let found = locate(path)?;
    if found.path.is_dir() {
        return Err(format!("{} is a directory: only files can be shared", path.display()));
    }
    let name = match expires {
        Some(d) => format!("user.xos.url.{}", d.as_secs()),
        None => "user.xos.url".to_string(),
    };
    match xattr(&found.path, &name) {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(format!("{} is not stored yet (a file still being written)", path.display())),
        Err(e) => Err(not_xosfs(path, e)),
    }
}

fn not_xosfs(path: &Path, e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => format!("{} is not inside a mounted xosfs", path.display()),
        _ => format!("{}: {e}", path.display()),
    }
}

/// What XOS keeps of the file at `path`, as `name: value` lines.
pub fn info(path: &Path) -> Result<String, String> {
    let found = locate(path)?;
    let meta = std::fs::metadata(&found.path).map_err(|e| format!("{}: {e}", path.display()))?;
    let attr = |name: &str| xattr(&found.path, name).map_err(|e| not_xosfs(path, e));
    let etag = attr("user.xos.etag")?;
    let mut lines = vec![
        ("path", found.path.display().to_string()),
        ("bucket", found.bucket.clone()),
        ("key", found.key.clone()),
        ("size", meta.len().to_string()),
    ];
    if etag.is_none() && meta.is_dir() {
        lines.push(("object", "none (a directory without a marker object)".into()));
    } else {
        let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        lines.push(("etag", show(etag)));
        lines.push(("version", show(attr("user.xos.version_id")?)));
        lines.push(("storage class", show(attr("user.xos.storage_class")?)));
        lines.push(("content type", show(attr("user.xos.content_type")?)));
        lines.push(("tags", show(attr("user.xos.tags")?)));
        lines.push(("acl", show(attr("user.xos.acl")?)));
    }
    Ok(lines.into_iter().map(|(k, v)| format!("{k}: {v}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_xosfs_mount_holding_the_path_is_found() {
        let table = "\
22 1 0:21 / / rw - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/media rw,nosuid - fuse.xosfs media rw
41 40 0:41 / /mnt/media/deep\\040dir rw - fuse media:/photos rw
42 22 0:42 / /mnt/other rw - fuse.sshfs host: rw
";
        let find = |p: &str| innermost_mount(table, Path::new(p));
        assert_eq!(find("/mnt/media/a.mp4"), Some(("/mnt/media".into(), "media".into())));
        assert_eq!(find("/mnt/media/deep dir/x.jpg"), Some(("/mnt/media/deep dir".into(), "media:/photos".into())));
        assert_eq!(find("/mnt/other/x"), None);
        assert_eq!(find("/home/x"), None);
    }
}
