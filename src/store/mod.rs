//! The object store the filesystem core is written against: one bucket's objects (or an
//! account's, keyed `BUCKET/KEY`), with S3's semantics (flat keys, ETags, conditional
//! reads and copies, multipart uploads).
//!
//! - [`crate::s3::S3Store`]: the real store, over HTTP with aws-sdk-s3;
//! - [`MemoryStore`]: the same semantics in memory, for tests of the core without a server;
//! - [`FaultyStore`]: wraps any store and injects errors, latency and restarts by rule;
//! - [`RetryingStore`]: wraps any store and sends transient failures again, with backoff;
//! - [`BandwidthLimit`]: wraps any store and paces its body bytes (`--max-bandwidth`);
//! - [`MeteredStore`]: wraps any store and counts its requests into the metrics;
//! - [`DeleteQueue`]: wraps any store and sends its deletes in batches (`--write-back`);
//! - [`AsOfStore`]: a read-only view of a versioned bucket as it was at a moment;
//! - [`AccountStore`]: every bucket of an account as one store of `BUCKET/KEY` keys.
//!
//! The wrappers implement `StoreLayer` (layer.rs): each writes only the requests it changes.

pub mod account;
mod as_of;
mod bandwidth;
mod deletes;
mod error;
mod etag;
mod faults;
mod layer;
mod memory;
mod metered;
mod retry;
pub mod settings;

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

pub use account::{Account, AccountStore, BucketSummary, Buckets};
pub use as_of::AsOfStore;
pub use bandwidth::{BandwidthLimit, TokenBucket};
pub use deletes::DeleteQueue;
pub use error::{ErrorKind, ObjectError};
pub use etag::{multipart_etag, put_etag, same_etag};
pub use faults::{Fault, FaultRule, FaultyStore};
use layer::StoreLayer;
pub use memory::MemoryStore;
pub use metered::MeteredStore;
pub use retry::{RetryPolicy, RetryingStore};
pub use settings::BucketSetting;

/// One entry of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    pub etag: Option<String>,
}

/// One page of a listing; `next` continues it (a v1 marker or a v2 token).
#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
    pub next: Option<String>,
}

/// What HeadObject says about one object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
    pub last_modified: Option<SystemTime>,
    pub etag: Option<String>,
    /// `None` when the store does not say (S3 omits it for STANDARD).
    pub storage_class: Option<String>,
    /// User metadata, without the `x-amz-meta-` prefix.
    pub metadata: HashMap<String, String>,
    /// `None` when the bucket never had versioning on.
    pub version_id: Option<String>,
}

/// An object's tags, in the store's order.
pub type Tags = Vec<(String, String)>;

/// One version of a key (or a delete marker), as ListObjectVersions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// `null` for the version written while versioning was never on or suspended.
    pub version_id: String,
    pub last_modified: Option<SystemTime>,
    pub size: u64,
    pub etag: Option<String>,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// Where a listing of versions continues (ListObjectVersions' key and version-id markers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMarker {
    pub key: String,
    pub version_id: String,
}

/// One page of versions, newest first within a key; `next` continues the listing.
#[derive(Debug, Default)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    pub next: Option<VersionMarker>,
}

/// What every upload carries besides the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// User metadata, without the `x-amz-meta-` prefix.
    pub metadata: HashMap<String, String>,
    /// A canned ACL (`private`, `public-read`, ...); `None` leaves the bucket's default.
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    /// Tags to store the object with; `None` stores a new object without tags and keeps a
    /// copy's source tags.
    #[serde(default)]
    pub tags: Option<Tags>,
}

/// What an upload requires of the object it replaces, so that a change made elsewhere
/// since this mount read the object is never overwritten silently.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Precondition {
    /// Store whatever is there.
    #[default]
    None,
    /// Only if no object has the key (`If-None-Match: *`).
    Absent,
    /// Only over the version with this ETag (`If-Match`).
    Matches(String),
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// Where a listing of multipart uploads continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMarker {
    pub key: String,
    pub upload_id: String,
}

/// One page of unfinished uploads; `next` continues the listing.
#[derive(Debug, Default)]
pub struct UploadPage {
    pub uploads: Vec<UnfinishedUpload>,
    pub next: Option<UploadMarker>,
}

/// A part that is stored: its number and the ETag the completion must name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletedPart {
    pub number: i32,
    pub etag: String,
}

/// The body of a GET being received, chunk by chunk.
pub struct ObjectBody {
    chunks: BoxStream<'static, Result<Bytes, ObjectError>>,
}

impl ObjectBody {
    pub fn new(chunks: BoxStream<'static, Result<Bytes, ObjectError>>) -> ObjectBody {
        ObjectBody { chunks }
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ObjectError> {
        self.chunks.next().await.transpose()
    }
}

/// One bucket of an S3-compatible store. Every method is one request; deleting a key that
/// does not exist succeeds, as S3 answers 204.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn head_bucket(&self) -> Result<(), ObjectError>;

    /// One page of keys under `prefix`, grouped at `delimiter` when given, after
    /// `continuation`.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError>;

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError>;

    /// Starts a GET of `range` (non-empty, within the object), only from the version with
    /// this ETag when given (else `PreconditionFailed`), so bytes of two versions are
    /// never mixed; the body arrives as it is received.
    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError>;

    /// Stores `body` as `key` in one request, only if `condition` holds (else
    /// `PreconditionFailed`, or `NotFound` when an ETag was required and there is no
    /// object); returns the new ETag.
    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError>;

    /// Server-side copy of `source` (only at ETag `etag`, when given) to `key`, with the
    /// metadata replaced by `opts`, or kept when `None`. At most 5 GiB.
    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError>;

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError>;

    /// Deletes up to 1000 keys; returns those that could not be deleted, with the reason.
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError>;

    /// Starts a multipart upload; returns its id.
    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError>;

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError>;

    /// Copies `range` of `source_key` (only while its ETag is `source_etag`) into part
    /// `number`, on the server.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source_key: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> Result<CompletedPart, ObjectError>;

    /// Makes the upload the object, only if `condition` holds (as for
    /// [`ObjectStore::put_object_if`]); returns its ETag.
    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError>;

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError>;

    /// One page of the unfinished uploads of keys under `prefix`, in key and upload id
    /// order, starting after `after`.
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError>;

    /// The object's tags (none: an empty set).
    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError>;

    /// Replaces the object's tags; an empty set deletes them. The data, metadata and
    /// Last-Modified stay as they are.
    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError>;

    /// The object's ACL as a canned name ([`settings::CANNED_ACLS`]), `custom` when its
    /// grants match none.
    async fn get_acl(&self, key: &str) -> Result<String, ObjectError>;

    /// Gives the object a canned ACL.
    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError>;

    /// A URL anyone can GET the object (or that version of it) with, for `expires`.
    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError>;

    /// One page of the versions of keys under `prefix`, in key order and newest first
    /// within a key, starting after `after`.
    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError>;

    /// HeadObject of one version.
    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError>;

    /// A ranged GET of one version (versions never change, so no ETag condition).
    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError>;

    /// A bucket setting in its text form ([`settings`]); `None` when there is none. `root`
    /// is the key prefix of the bucket's root directory: "" in a store of one bucket,
    /// "BUCKET/" in an account's store.
    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError>;

    /// Replaces a bucket setting with `value`, in its text form, checked by
    /// [`settings::validate`] before.
    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError>;

    /// Deletes a bucket setting (versioning, which cannot be deleted, is suspended).
    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError>;

    /// Stores `body` as `key`, over whatever is there.
    async fn put_object(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<Option<String>, ObjectError> {
        self.put_object_if(key, body, opts, &Precondition::None).await
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<Option<String>, ObjectError> {
        self.complete_multipart_upload_if(key, upload_id, parts, &Precondition::None).await
    }

    /// One page of keys under `prefix`, grouped at `/`.
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.list(prefix, Some("/"), continuation, max_keys).await
    }

    /// Every key under `prefix`, at any depth, paging as needed.
    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectSummary>, ObjectError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self.list(prefix, None, next, 1000).await?;
            all.extend(page.objects);
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// The bytes of `range` of the version with ETag `etag` (any version when `None`).
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes, ObjectError> {
        let mut body = self.get_stream(key, range, etag).await?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        self.get_range_if(key, range, None).await
    }
}
