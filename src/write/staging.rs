//! The staging file: a sparse local copy of a file being written, in the cache directory.
//! Its I/O runs on tokio's blocking pool, never on the runtime's worker threads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct StagingFile {
    file: Arc<File>,
    path: PathBuf,
    /// Set when an upload failed: the file then outlives the handle, holding the data.
    keep: bool,
}

impl StagingFile {
    /// A new empty staging file for `key` in `dir` (made if missing, mode 0700).
    pub fn create(dir: &Path, key: &str) -> std::io::Result<StagingFile> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let base: String = key
            .rsplit('/')
            .next()
            .unwrap_or("file")
            .chars()
            .map(|c| if c.is_alphanumeric() || ".-_".contains(c) { c } else { '_' })
            .take(80)
            .collect();
        let name = format!("{}-{}-{base}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        Ok(StagingFile { file: Arc::new(file), path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write_at(&self, offset: u64, data: Vec<u8>) -> std::io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.write_all_at(&data, offset)).await
    }

    /// Reads `len` bytes at `offset`; a hole or the end of the file reads as zeros.
    pub async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let file = self.file.clone();
        blocking(move || {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                match file.read_at(&mut buf[done..], offset + done as u64)? {
                    0 => break,
                    n => done += n,
                }
            }
            Ok(buf)
        })
        .await
    }

    pub async fn set_len(&self, len: u64) -> std::io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.set_len(len)).await
    }

    /// Keeps the file after the handle is gone (its data could not be uploaded).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holes_read_as_zeros_and_drop_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = StagingFile::create(dir.path(), "a/b/movie.mp4").unwrap();
        assert!(f.path().file_name().unwrap().to_str().unwrap().ends_with("movie.mp4"));
        f.write_at(10, b"abc".to_vec()).await.unwrap();
        assert_eq!(f.read_at(8, 8).await.unwrap(), b"\0\0abc\0\0\0");
        f.set_len(11).await.unwrap();
        assert_eq!(f.read_at(8, 8).await.unwrap(), b"\0\0a\0\0\0\0\0");
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn kept_file_survives() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StagingFile::create(dir.path(), "k").unwrap();
        f.keep();
        let path = f.path().to_path_buf();
        drop(f);
        assert!(path.exists());
    }
}
