//! The bucket as it was at a moment (`--version-at`): for each key, the newest version
//! stored at or before it, hidden when that is a delete marker; reads and HEADs ask for
//! that version id. Built once from ListObjectVersions; read-only. Tags and ACLs are the
//! object's as it is now (XOS keeps tags per version, but a view of the past asks for the
//! current ones).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::info;

use super::memory::list_sorted;
use super::{
    same_etag, BucketSetting, CompletedPart, ErrorKind, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore,
    ObjectSummary, ObjectVersion, Precondition, PutOptions, Tags, UploadMarker, UploadPage,
};

pub struct AsOfStore {
    inner: Arc<dyn ObjectStore>,
    /// Key -> the version shown.
    shown: BTreeMap<String, ObjectVersion>,
}

impl AsOfStore {
    /// Lists every version of the keys under `prefix` and keeps, for each key, the one
    /// current at `at`.
    pub async fn load(inner: Arc<dyn ObjectStore>, prefix: &str, at: SystemTime) -> Result<AsOfStore, ObjectError> {
        let mut shown: BTreeMap<String, ObjectVersion> = BTreeMap::new();
        let mut after = None;
        let mut seen = 0u64;
        loop {
            let page = inner.list_versions(prefix, after, 1000).await?;
            for v in page.versions {
                seen += 1;
                if v.last_modified.is_some_and(|t| t <= at) && shown.get(&v.key).is_none_or(|s| newer(&v, s)) {
                    shown.insert(v.key.clone(), v);
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        shown.retain(|_, v| !v.delete_marker);
        info!(versions = seen, keys = shown.len(), "the bucket as it was at the --version-at time");
        Ok(AsOfStore { inner, shown })
    }

    fn version(&self, op: &'static str, key: &str) -> Result<&ObjectVersion, ObjectError> {
        self.shown.get(key).ok_or_else(|| {
            ObjectError::new(ErrorKind::NotFound, op, key).with_status(404).with_message("no version at that time")
        })
    }
}

/// Whether `a` was stored after `b` (a listing is newest first within a key, but pages may
/// be merged out of order).
fn newer(a: &ObjectVersion, b: &ObjectVersion) -> bool {
    a.last_modified > b.last_modified
}

fn read_only(op: &'static str, key: &str) -> ObjectError {
    ObjectError::new(ErrorKind::Rejected, op, key).with_message("a --version-at mount is read-only")
}

#[async_trait]
impl super::StoreLayer for AsOfStore {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        let max = max_keys.clamp(1, 1000) as usize;
        Ok(list_sorted(&self.shown, prefix, delimiter, continuation.as_deref(), max, |key, v| ObjectSummary {
            key: key.to_string(),
            size: v.size,
            last_modified: v.last_modified,
            etag: v.etag.clone(),
        }))
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let v = self.version("HeadObject", key)?;
        self.inner.head_version(key, &v.version_id).await
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        const OP: &str = "GetObject";
        let v = self.version(OP, key)?;
        if let (Some(want), Some(have)) = (etag, &v.etag) {
            if !same_etag(want, have) {
                return Err(ObjectError::new(ErrorKind::PreconditionFailed, OP, key).with_status(412));
            }
        }
        self.inner.get_version_stream(key, &v.version_id, range).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        _: Bytes,
        _: &PutOptions,
        _: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        Err(read_only("PutObject", key))
    }

    async fn copy_object(
        &self,
        _: &str,
        _: Option<&str>,
        key: &str,
        _: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        Err(read_only("CopyObject", key))
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        Err(read_only("DeleteObject", key))
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        Err(read_only("DeleteObjects", keys.first().map(String::as_str).unwrap_or_default()))
    }

    async fn create_multipart_upload(&self, key: &str, _: &PutOptions) -> Result<String, ObjectError> {
        Err(read_only("CreateMultipartUpload", key))
    }

    async fn upload_part(&self, key: &str, _: &str, _: i32, _: Bytes) -> Result<CompletedPart, ObjectError> {
        Err(read_only("UploadPart", key))
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        _: &str,
        _: i32,
        _: &str,
        _: &str,
        _: Range<u64>,
    ) -> Result<CompletedPart, ObjectError> {
        Err(read_only("UploadPartCopy", key))
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        _: &str,
        _: &[CompletedPart],
        _: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        Err(read_only("CompleteMultipartUpload", key))
    }

    async fn abort_multipart_upload(&self, key: &str, _: &str) -> Result<(), ObjectError> {
        Err(read_only("AbortMultipartUpload", key))
    }

    /// None: nothing is uploaded through this view.
    async fn list_multipart_uploads(
        &self,
        _: &str,
        _: Option<UploadMarker>,
        _: i32,
    ) -> Result<UploadPage, ObjectError> {
        Ok(UploadPage::default())
    }

    async fn put_tags(&self, key: &str, _: &Tags) -> Result<(), ObjectError> {
        Err(read_only("PutObjectTagging", key))
    }

    async fn put_acl(&self, key: &str, _: &str) -> Result<(), ObjectError> {
        Err(read_only("PutObjectAcl", key))
    }

    /// A URL of the version shown.
    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        let shown = match version_id {
            Some(v) => v,
            None => &self.version("GetObject", key)?.version_id,
        };
        self.inner.presign_get(key, Some(shown), expires).await
    }

    async fn put_bucket_setting(&self, _: &str, _: BucketSetting, _: &str) -> Result<(), ObjectError> {
        Err(read_only("PutBucketSetting", ""))
    }

    async fn delete_bucket_setting(&self, _: &str, _: BucketSetting) -> Result<(), ObjectError> {
        Err(read_only("DeleteBucketSetting", ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn shows_the_keys_stored_at_the_time_and_refuses_writes() {
        let memory = MemoryStore::default();
        memory.put_object("old", Bytes::from_static(b"before"), &PutOptions::default()).await.unwrap();
        let at = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        memory.put_object("new", Bytes::from_static(b"after"), &PutOptions::default()).await.unwrap();
        let view = AsOfStore::load(Arc::new(memory), "", at).await.unwrap();
        let page = view.list("", Some("/"), None, 1000).await.unwrap();
        assert_eq!(page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["old"]);
        assert_eq!(view.get_range("old", 0..6).await.unwrap(), &b"before"[..]);
        assert!(view.head_object("new").await.unwrap_err().is(ErrorKind::NotFound));
        assert!(view.put_object("x", Bytes::new(), &PutOptions::default()).await.is_err());
    }
}
