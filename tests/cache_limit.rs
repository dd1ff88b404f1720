//! The staging disk is bounded: a file larger than the cache directory's filesystem is
//! copied in (its stored parts give their staging back), random writes that cannot fit
//! get ENOSPC (not EIO), and nothing written before is lost.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::process::Command;

use common::{sha256, Server};
use xosfs_testserver::pseudo_random_bytes;

const MIB: usize = 1 << 20;

/// A tmpfs of `mib` MiB, private to its owner, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount a tmpfs (the tests run as root)");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_cache_dir_smaller_than_the_file_copies_it_and_random_writes_get_enospc() {
    let server = Server::memory();
    let disk = SmallDisk::new(24);
    let mount = server.mount(&["--cache-dir", disk.dir.path().to_str().unwrap(), "--part-size", "5M"]);

    // Sequential: 64 MiB through a 24 MiB cache directory.
    let big = pseudo_random_bytes(64 * MIB, 1);
    std::fs::write(mount.join("big.bin"), &big).unwrap();
    assert_eq!(sha256(&server.stored("big.bin").unwrap()), sha256(&big));

    // Random (back to front, so nothing streams): the disk fills, and says so.
    let mut f = std::fs::File::create(mount.join("random.bin")).unwrap();
    let block = pseudo_random_bytes(MIB, 2);
    let mut written = Vec::new();
    let mut refused = None;
    for i in (0..40u64).rev() {
        f.seek(SeekFrom::Start(i * MIB as u64)).unwrap();
        match f.write_all(&block) {
            Ok(()) => written.push(i),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("40 MiB of random writes fit in a 24 MiB cache directory");
    assert_eq!(refused.raw_os_error(), Some(libc::ENOSPC), "{refused}");
    assert!(!written.is_empty());
    drop(f);
    // What was written before the disk filled is stored as written; the refused write may
    // have landed in part (a short write), and the rest are holes.
    let stored = server.stored("random.bin").unwrap();
    let lowest = *written.last().unwrap() as usize;
    assert_eq!(stored.len(), 40 * MIB);
    assert!(stored[..(lowest - 1) * MIB].iter().all(|&b| b == 0));
    let partial = &stored[(lowest - 1) * MIB..lowest * MIB];
    if let Some(last) = partial.iter().rposition(|&b| b != 0) {
        assert!(partial[..=last] == block[..=last], "the short write holds other bytes");
    }
    for &i in &written {
        let at = i as usize * MIB;
        assert!(stored[at..at + MIB] == block[..], "block {i} differs");
    }
    // The copy made before is untouched, and the mount still writes.
    assert_eq!(sha256(&server.stored("big.bin").unwrap()), sha256(&big));
    std::fs::write(mount.join("after.txt"), b"still fine").unwrap();
    assert_eq!(server.stored("after.txt").as_deref(), Some(&b"still fine"[..]));
}

#[test]
fn a_cache_limit_bounds_the_staging_of_a_copy() {
    let server = Server::memory();
    let mount = server.mount(&["--cache-limit", "12M", "--part-size", "5M"]);
    let big = pseudo_random_bytes(48 * MIB, 3);
    std::fs::write(mount.join("limited.bin"), &big).unwrap();
    assert_eq!(sha256(&server.stored("limited.bin").unwrap()), sha256(&big));
    let out = server.xosfs().args(["b", "/nonexistent", "--cache-limit", "6M", "--part-size", "5M"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cache-limit"), "{out:?}");
}
