//! [`StoreLayer`]: what a store wrapping another writes, so that it states only what it
//! changes. Every method defaults to passing the request to [`StoreLayer::inner`] through
//! [`StoreLayer::request`], the one place a layer that treats all requests alike (retries,
//! faults, metrics) hooks in; a layer that changes some requests overrides those methods.
//! Every `StoreLayer` is an [`ObjectStore`].
//!
//! The methods have ObjectStore's names, so a module importing both traits cannot call
//! them on a layer without naming the trait: layers implement it as `super::StoreLayer`.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{
    BucketSetting, CompletedPart, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, Precondition, PutOptions,
    Tags, UploadMarker, UploadPage, VersionMarker, VersionPage,
};

/// A store that wraps another; see the module.
#[async_trait]
pub trait StoreLayer: Send + Sync + 'static {
    /// The store below.
    fn inner(&self) -> &dyn ObjectStore;

    /// Sends one request, given its S3 operation and the key it names (the prefix of a
    /// listing, the first key of a batch delete, the root of a bucket setting). Each call of
    /// `send` sends the request to the inner store once more, with its body again.
    ///
    /// Methods a layer overrides do not pass through here unless the override calls it.
    fn request<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _key: &'a str,
        mut send: impl FnMut() -> BoxFuture<'a, Result<T, ObjectError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ObjectError>> {
        send()
    }

    async fn head_bucket(&self) -> Result<(), ObjectError> {
        self.request("HeadBucket", "", || self.inner().head_bucket()).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.request("ListObjects", prefix, || self.inner().list(prefix, delimiter, continuation.clone(), max_keys))
            .await
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        self.request("HeadObject", key, || self.inner().head_object(key)).await
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        self.request("GetObject", key, || self.inner().get_stream(key, range.clone(), etag)).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.request("PutObject", key, || self.inner().put_object_if(key, body.clone(), opts, condition)).await
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        self.request("CopyObject", key, || self.inner().copy_object(source, etag, key, opts)).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        self.request("DeleteObject", key, || self.inner().delete_object(key)).await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        self.request("DeleteObjects", first, || self.inner().delete_objects(keys)).await
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        self.request("CreateMultipartUpload", key, || self.inner().create_multipart_upload(key, opts)).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        self.request("UploadPart", key, || self.inner().upload_part(key, upload_id, number, body.clone())).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source_key: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> Result<CompletedPart, ObjectError> {
        self.request("UploadPartCopy", key, || {
            self.inner().upload_part_copy(key, upload_id, number, source_key, source_etag, range.clone())
        })
        .await
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.request("CompleteMultipartUpload", key, || {
            self.inner().complete_multipart_upload_if(key, upload_id, parts, condition)
        })
        .await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        self.request("AbortMultipartUpload", key, || self.inner().abort_multipart_upload(key, upload_id)).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        self.request("ListMultipartUploads", prefix, || {
            self.inner().list_multipart_uploads(prefix, after.clone(), max_uploads)
        })
        .await
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        self.request("GetObjectTagging", key, || self.inner().get_tags(key)).await
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        self.request("PutObjectTagging", key, || self.inner().put_tags(key, tags)).await
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        self.request("GetObjectAcl", key, || self.inner().get_acl(key)).await
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        self.request("PutObjectAcl", key, || self.inner().put_acl(key, canned)).await
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        self.request("PresignGetObject", key, || self.inner().presign_get(key, version_id, expires)).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        self.request("ListObjectVersions", prefix, || self.inner().list_versions(prefix, after.clone(), max_keys)).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        self.request("HeadObject", key, || self.inner().head_version(key, version_id)).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        self.request("GetObject", key, || self.inner().get_version_stream(key, version_id, range.clone())).await
    }

    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        self.request("GetBucketSetting", root, || self.inner().get_bucket_setting(root, which)).await
    }

    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        self.request("PutBucketSetting", root, || self.inner().put_bucket_setting(root, which, value)).await
    }

    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        self.request("DeleteBucketSetting", root, || self.inner().delete_bucket_setting(root, which)).await
    }
}

#[async_trait]
impl<L: StoreLayer> ObjectStore for L {
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        StoreLayer::head_bucket(self).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        StoreLayer::list(self, prefix, delimiter, continuation, max_keys).await
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        StoreLayer::head_object(self, key).await
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        StoreLayer::get_stream(self, key, range, etag).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        StoreLayer::put_object_if(self, key, body, opts, condition).await
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        StoreLayer::copy_object(self, source, etag, key, opts).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        StoreLayer::delete_object(self, key).await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        StoreLayer::delete_objects(self, keys).await
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        StoreLayer::create_multipart_upload(self, key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        StoreLayer::upload_part(self, key, upload_id, number, body).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source_key: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> Result<CompletedPart, ObjectError> {
        StoreLayer::upload_part_copy(self, key, upload_id, number, source_key, source_etag, range).await
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        StoreLayer::complete_multipart_upload_if(self, key, upload_id, parts, condition).await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        StoreLayer::abort_multipart_upload(self, key, upload_id).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        StoreLayer::list_multipart_uploads(self, prefix, after, max_uploads).await
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        StoreLayer::get_tags(self, key).await
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        StoreLayer::put_tags(self, key, tags).await
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        StoreLayer::get_acl(self, key).await
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        StoreLayer::put_acl(self, key, canned).await
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        StoreLayer::presign_get(self, key, version_id, expires).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        StoreLayer::list_versions(self, prefix, after, max_keys).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        StoreLayer::head_version(self, key, version_id).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        StoreLayer::get_version_stream(self, key, version_id, range).await
    }

    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        StoreLayer::get_bucket_setting(self, root, which).await
    }

    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        StoreLayer::put_bucket_setting(self, root, which, value).await
    }

    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        StoreLayer::delete_bucket_setting(self, root, which).await
    }
}
