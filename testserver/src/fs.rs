//! s3s-fs, with its answers for directory keys made S3-like.

use std::io;
use std::path::{Path, PathBuf};

use s3s::{s3_error, S3Result, S3};
use s3s_fs::FileSystem;

/// s3s-fs over a root directory (buckets are its subdirectories).
///
/// s3s-fs answers HEAD/GET of a key naming a directory (`dir` or `dir/`, a prefix with
/// objects below it) with 500 after trying to read the directory; S3 has no such object,
/// so this answers 404 NoSuchKey instead, which clients probing for folders rely on.
pub struct FsStore {
    inner: FileSystem,
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: impl AsRef<Path>) -> io::Result<FsStore> {
        let root = root.as_ref().canonicalize()?;
        let inner = FileSystem::new(&root).map_err(|e| io::Error::other(format!("{e:?}")))?;
        Ok(FsStore { inner, root })
    }

    async fn before(&self, op: &'static str, bucket: Option<&str>, key: Option<&str>) -> S3Result<()> {
        if let ("GetObject" | "HeadObject", Some(bucket), Some(key)) = (op, bucket, key) {
            let path = self.root.join(bucket).join(key.trim_start_matches('/'));
            if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
                return Err(s3_error!(NoSuchKey));
            }
        }
        Ok(())
    }

    fn observe_get(&self, _input: &s3s::dto::GetObjectInput) {}

    fn observe_got(&self, _output: &s3s::S3Result<s3s::S3Response<s3s::dto::GetObjectOutput>>) {}

    // Encoded once, by the Instrumented layer around every backend.
    fn listed<T>(&self, _output: &mut T) {}
}

delegate_s3!([impl S3 for FsStore]);
