//! The mount's lifetime: check the mount point, mount, serve until a signal or an
//! external unmount, then unmount cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{MountOption, Session, SessionACL};
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use crate::config::Access;
use crate::fs::Fs;
use crate::fuse::FuseAdapter;

#[derive(Debug, thiserror::Error)]
pub enum MountPointError {
    #[error("mount point {0} does not exist")]
    Missing(PathBuf),
    #[error("mount point {0} is not a directory")]
    NotDirectory(PathBuf),
    #[error("mount point {0} is busy: something is already mounted there")]
    Busy(PathBuf),
    #[error("mount point {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The absolute mount point, if it exists, is a directory and has nothing mounted on it.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountPointError> {
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(MountPointError::Missing(path.into())),
        // ENOTCONN: a FUSE mount whose daemon died is still there.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Err(MountPointError::Busy(path.into())),
        Err(source) => return Err(MountPointError::Io { path: path.into(), source }),
    };
    if !canonical.is_dir() {
        return Err(MountPointError::NotDirectory(path.into()));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| MountPointError::Io { path: "/proc/self/mountinfo".into(), source })?;
    if mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(&unescape_mount_path(m)) == canonical) {
        return Err(MountPointError::Busy(path.into()));
    }
    Ok(canonical)
}

/// The filesystem type mounted at `canonical` (e.g. `fuse.xosfs`), from the mount table;
/// `None` when nothing is mounted there.
pub fn fstype_at(canonical: &Path) -> std::io::Result<Option<String>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    // The last mount on a path is the one seen; the type follows the " - " separator.
    Ok(mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(&unescape_mount_path(m)) == canonical))
        .filter_map(|l| l.split_once(" - ").and_then(|(_, rest)| rest.split(' ').next()).map(str::to_string))
        .next_back())
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct MountSpec<'a> {
    pub mountpoint: &'a Path,
    pub fs_name: String,
    pub read_only: bool,
    pub access: Access,
}

/// A mounted filesystem being served by the session's threads.
pub struct Mounted {
    mountpoint: PathBuf,
    term: Signal,
    int: Signal,
    unmounter: fuser::SessionUnmounter,
    done: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
    thread: std::thread::JoinHandle<()>,
}

/// Mounts and starts serving; returns once the kernel has completed the FUSE handshake.
pub fn mount(fs: Arc<Fs>, rt: &Runtime, spec: MountSpec<'_>) -> std::io::Result<Mounted> {
    let mut options = vec![
        MountOption::FSName(spec.fs_name),
        // In the mount data, so the kernel shows the type as fuse.xosfs: fuser's own
        // Subtype option only reaches fusermount, not a mount made directly as root.
        MountOption::CUSTOM("subtype=xosfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if spec.read_only {
        options.push(MountOption::RO);
    }
    let mut config = fuser::Config::default();
    config.mount_options = options;
    config.acl = match spec.access {
        Access::Owner => SessionACL::Owner,
        Access::OwnerAndRoot => SessionACL::RootAndOwner,
        Access::Everyone => SessionACL::All,
    };
    config.n_threads = Some(2);
    config.clone_fd = true;
    // Catch SIGTERM/SIGINT before the mount exists: the default action would kill the
    // process while it stats its own mount, leaving that request unanswered forever.
    let (term, int) = {
        let _runtime = rt.enter();
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    let adapter = FuseAdapter::new(fs, rt.handle().clone());
    let notifier = adapter.notifier_slot();
    let mut session = Session::new(adapter, spec.mountpoint, &config)?;
    let _ = notifier.set(session.notifier());
    let unmounter = session.unmount_callable();
    let (tx, done) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("fuse-session".into()).spawn(move || {
        let _ = tx.send(session.run());
    })?;
    Ok(Mounted { mountpoint: spec.mountpoint.to_path_buf(), term, int, unmounter, done, thread })
}

impl Mounted {
    /// Serves until SIGINT/SIGTERM (then unmounts) or until someone else unmounts.
    pub fn serve_until_stopped(mut self, rt: &Runtime) -> std::io::Result<()> {
        let outcome = rt.block_on(async {
            tokio::select! {
                _ = self.term.recv() => Ok(None),
                _ = self.int.recv() => Ok(None),
                ended = &mut self.done => Ok::<_, std::io::Error>(Some(ended.unwrap_or(Ok(())))),
            }
        })?;
        let result = match outcome {
            Some(ended) => {
                info!("{} was unmounted", self.mountpoint.display());
                ended
            }
            None => {
                info!("signal received: unmounting {}", self.mountpoint.display());
                if let Err(e) = self.unmounter.unmount() {
                    warn!("unmount failed ({e}); detaching the mount lazily");
                    lazy_unmount(&self.mountpoint)?;
                }
                rt.block_on(self.done).unwrap_or(Ok(()))
            }
        };
        let _ = self.thread.join();
        result
    }
}

fn lazy_unmount(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; umount2 does not keep the pointer.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount_path(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/x\13"), r"/x\13");
    }

    #[test]
    fn missing_and_file_mount_points_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(check_mountpoint(&missing), Err(MountPointError::Missing(_))));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(check_mountpoint(&file), Err(MountPointError::NotDirectory(_))));
        assert_eq!(check_mountpoint(dir.path()).unwrap(), std::fs::canonicalize(dir.path()).unwrap());
        assert!(matches!(check_mountpoint(Path::new("/proc")), Err(MountPointError::Busy(_))));
    }
}
