//! An account's store (`--all-buckets`): every bucket of the account as one store whose
//! keys are `BUCKET/KEY`, so that the core mounts an account as it mounts a bucket, with
//! the buckets as top-level directories.
//!
//! - A listing of the top (a prefix without `/`) is the bucket list (ListBuckets, kept
//!   for the attribute TTL), each bucket a common prefix `BUCKET/`.
//! - Everything under `BUCKET/` goes to that bucket's store, with the bucket taken off
//!   the keys sent and put back on the keys answered.
//! - The first page of a bucket's listing starts with a marker `BUCKET/` that no request
//!   stores (a HEAD of it finds nothing), so an empty bucket is an empty directory.
//! - A bucket that is gone (NoSuchBucket) is a directory that is gone: its listing is
//!   empty and its keys are not found.
//!
//! Buckets are made and removed through [`Account`], which the core calls for mkdir and
//! rmdir at the top; [`Buckets`] is what an account needs of the store.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    BucketSetting, CompletedPart, ErrorKind, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, ObjectSummary,
    Precondition, PutOptions, Tags, UploadMarker, UploadPage, VersionMarker, VersionPage,
};

/// One bucket of the account, as ListBuckets names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSummary {
    pub name: String,
    pub created: Option<SystemTime>,
}

/// The account-wide requests, and a store for each bucket.
#[async_trait]
pub trait Buckets: Send + Sync + 'static {
    async fn list_buckets(&self) -> Result<Vec<BucketSummary>, ObjectError>;

    /// Creates a bucket, with a canned ACL when given. `AlreadyExists` when there is one.
    async fn create_bucket(&self, name: &str, acl: Option<&str>) -> Result<(), ObjectError>;

    /// Deletes an empty bucket; `NotEmpty` while it holds objects, versions or uploads.
    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError>;

    /// The store of bucket `name` (which may not exist: its requests then fail with
    /// NoSuchBucket).
    fn bucket(&self, name: &str) -> Arc<dyn ObjectStore>;
}

/// The account's buckets, their list kept for a while.
pub struct Account {
    buckets: Arc<dyn Buckets>,
    ttl: Duration,
    listed: Mutex<Option<(Instant, Arc<Vec<BucketSummary>>)>>,
}

impl Account {
    /// An account whose bucket list is trusted for `ttl` (`--attr-ttl`).
    pub fn new(buckets: Arc<dyn Buckets>, ttl: Duration) -> Account {
        Account { buckets, ttl, listed: Mutex::new(None) }
    }

    /// The buckets, from the list kept within the TTL or asked for again.
    pub async fn list(&self) -> Result<Arc<Vec<BucketSummary>>, ObjectError> {
        if let Some((at, list)) = self.listed.lock().as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(list.clone());
            }
        }
        let asked = Instant::now();
        let mut list = self.buckets.list_buckets().await?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let list = Arc::new(list);
        *self.listed.lock() = Some((asked, list.clone()));
        Ok(list)
    }

    pub async fn create(&self, name: &str, acl: Option<&str>) -> Result<(), ObjectError> {
        let made = self.buckets.create_bucket(name, acl).await;
        self.listed.lock().take();
        made
    }

    pub async fn delete(&self, name: &str) -> Result<(), ObjectError> {
        let deleted = self.buckets.delete_bucket(name).await;
        self.listed.lock().take();
        deleted
    }

    fn store(&self, name: &str) -> Arc<dyn ObjectStore> {
        self.buckets.bucket(name)
    }
}

/// The store of all of an account's buckets; see the module's documentation.
pub struct AccountStore {
    account: Arc<Account>,
}

impl AccountStore {
    pub fn new(account: Arc<Account>) -> AccountStore {
        AccountStore { account }
    }

    /// The store, bucket and key of an object key `BUCKET/KEY`; anything else is no
    /// object of this store.
    fn object<'k>(
        &self,
        op: &'static str,
        key: &'k str,
    ) -> Result<(Arc<dyn ObjectStore>, &'k str, &'k str), ObjectError> {
        match key.split_once('/') {
            Some((bucket, rest)) if !bucket.is_empty() && !rest.is_empty() => {
                Ok((self.account.store(bucket), bucket, rest))
            }
            _ => Err(outside_buckets(op, key)),
        }
    }

    /// The store and bucket of a prefix `BUCKET/...` that requests go to bucket by bucket.
    fn under<'k>(
        &self,
        op: &'static str,
        prefix: &'k str,
    ) -> Result<(Arc<dyn ObjectStore>, &'k str, &'k str), ObjectError> {
        match prefix.split_once('/') {
            Some((bucket, rest)) if !bucket.is_empty() => Ok((self.account.store(bucket), bucket, rest)),
            _ => Err(ObjectError::new(ErrorKind::Rejected, op, prefix)
                .with_message("an account's store answers this bucket by bucket")),
        }
    }

    /// Whether `bucket` may name a bucket: any name the naming rules allow, and those in
    /// the bucket list (made before today's rules). Other names (a file manager's
    /// `.Trash-0`, `.hidden`) are no bucket without asking: the store would refuse them.
    async fn may_exist(&self, bucket: &str) -> Result<bool, ObjectError> {
        if bucket_name_problem(bucket).is_none() {
            return Ok(true);
        }
        Ok(self.account.list().await?.iter().any(|b| b.name == bucket))
    }

    /// The top: one common prefix per bucket whose name starts as `prefix` does.
    async fn list_top(&self, prefix: &str, delimiter: Option<&str>) -> Result<ListPage, ObjectError> {
        if delimiter != Some("/") {
            return Err(ObjectError::new(ErrorKind::Rejected, "ListObjects", prefix)
                .with_message("an account's store lists its top one level deep"));
        }
        let buckets = self.account.list().await?;
        let common_prefixes =
            buckets.iter().map(|b| format!("{}/", b.name)).filter(|p| p.starts_with(prefix)).collect();
        Ok(ListPage { objects: Vec::new(), common_prefixes, next: None })
    }
}

fn outside_buckets(op: &'static str, key: &str) -> ObjectError {
    ObjectError::new(ErrorKind::Rejected, op, key).with_message("an account's store holds objects only inside buckets")
}

/// An error of `bucket`'s store as this store's: keys with their bucket, and a missing
/// bucket a missing key.
fn in_bucket(bucket: &str, e: ObjectError) -> ObjectError {
    let kind = match e.kind {
        ErrorKind::NoSuchBucket => ErrorKind::NotFound,
        other => other,
    };
    let key = format!("{bucket}/{}", e.key);
    ObjectError { kind, key, ..e }
}

/// `marker` with its bucket taken off, or `None` when it lies before the bucket.
fn strip_marker_key(bucket: &str, key: &str) -> Option<String> {
    key.strip_prefix(bucket).and_then(|k| k.strip_prefix('/')).map(str::to_string)
}

#[async_trait]
impl ObjectStore for AccountStore {
    /// Whether the account's buckets can be listed (the start-up check).
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        self.account.list().await.map(drop)
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        let Some((bucket, rest)) = prefix.split_once('/') else {
            return self.list_top(prefix, delimiter).await;
        };
        if !self.may_exist(bucket).await? {
            return Ok(ListPage::default());
        }
        let first = rest.is_empty() && continuation.is_none();
        let page = match self.account.store(bucket).list(rest, delimiter, continuation, max_keys).await {
            Ok(page) => page,
            Err(e) if e.kind == ErrorKind::NoSuchBucket => return Ok(ListPage::default()),
            Err(e) => return Err(in_bucket(bucket, e)),
        };
        let marker = first.then(|| ObjectSummary { key: prefix.to_string(), size: 0, last_modified: None, etag: None });
        let objects = marker
            .into_iter()
            .chain(page.objects.into_iter().map(|o| ObjectSummary { key: format!("{bucket}/{}", o.key), ..o }))
            .collect();
        let common_prefixes = page.common_prefixes.into_iter().map(|p| format!("{bucket}/{p}")).collect();
        Ok(ListPage { objects, common_prefixes, next: page.next })
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let (store, bucket, rest) =
            self.object("HeadObject", key).map_err(|e| ObjectError { kind: ErrorKind::NotFound, ..e })?;
        store.head_object(rest).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        let (store, bucket, rest) = self.object("GetObject", key)?;
        store.get_stream(rest, range, etag).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let (store, bucket, rest) = self.object("PutObject", key)?;
        store.put_object_if(rest, body, opts, condition).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        const OP: &str = "CopyObject";
        let (store, bucket, rest) = self.object(OP, key)?;
        let source = same_bucket(OP, bucket, source)?;
        store.copy_object(source, etag, rest, opts).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        let (store, bucket, rest) = self.object("DeleteObject", key)?;
        store.delete_object(rest).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        let mut refused = Vec::new();
        let mut by_bucket: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for key in keys {
            match key.split_once('/') {
                Some((bucket, rest)) if !bucket.is_empty() && !rest.is_empty() => {
                    by_bucket.entry(bucket).or_default().push(rest.to_string());
                }
                _ => refused.push((key.clone(), outside_buckets("DeleteObjects", key).to_string())),
            }
        }
        for (bucket, keys) in by_bucket {
            let answer = self.account.store(bucket).delete_objects(&keys).await.map_err(|e| in_bucket(bucket, e))?;
            refused.extend(answer.into_iter().map(|(key, why)| (format!("{bucket}/{key}"), why)));
        }
        Ok(refused)
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        let (store, bucket, rest) = self.object("CreateMultipartUpload", key)?;
        store.create_multipart_upload(rest, opts).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let (store, bucket, rest) = self.object("UploadPart", key)?;
        store.upload_part(rest, upload_id, number, body).await.map_err(|e| in_bucket(bucket, e))
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
        const OP: &str = "UploadPartCopy";
        let (store, bucket, rest) = self.object(OP, key)?;
        let source = same_bucket(OP, bucket, source_key)?;
        store
            .upload_part_copy(rest, upload_id, number, source, source_etag, range)
            .await
            .map_err(|e| in_bucket(bucket, e))
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let (store, bucket, rest) = self.object("CompleteMultipartUpload", key)?;
        store.complete_multipart_upload_if(rest, upload_id, parts, condition).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        let (store, bucket, rest) = self.object("AbortMultipartUpload", key)?;
        store.abort_multipart_upload(rest, upload_id).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        let (store, bucket, rest) = self.under("ListMultipartUploads", prefix)?;
        let after = after.and_then(|m| Some(UploadMarker { key: strip_marker_key(bucket, &m.key)?, ..m }));
        let page = match store.list_multipart_uploads(rest, after, max_uploads).await {
            Ok(page) => page,
            Err(e) if e.kind == ErrorKind::NoSuchBucket => return Ok(UploadPage::default()),
            Err(e) => return Err(in_bucket(bucket, e)),
        };
        let with_bucket = |key: String| format!("{bucket}/{key}");
        Ok(UploadPage {
            uploads: page
                .uploads
                .into_iter()
                .map(|u| super::UnfinishedUpload { key: with_bucket(u.key), ..u })
                .collect(),
            next: page.next.map(|m| UploadMarker { key: with_bucket(m.key), ..m }),
        })
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        let (store, bucket, rest) = self.object("GetObjectTagging", key)?;
        store.get_tags(rest).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        let (store, bucket, rest) = self.object("PutObjectTagging", key)?;
        store.put_tags(rest, tags).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        let (store, bucket, rest) = self.object("GetObjectAcl", key)?;
        store.get_acl(rest).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        let (store, bucket, rest) = self.object("PutObjectAcl", key)?;
        store.put_acl(rest, canned).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        let (store, bucket, rest) = self.object("GetObject", key)?;
        store.presign_get(rest, version_id, expires).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        let (store, bucket, rest) = self.under("ListObjectVersions", prefix)?;
        let after = after.and_then(|m| Some(VersionMarker { key: strip_marker_key(bucket, &m.key)?, ..m }));
        let page = store.list_versions(rest, after, max_keys).await.map_err(|e| in_bucket(bucket, e))?;
        let with_bucket = |key: String| format!("{bucket}/{key}");
        Ok(VersionPage {
            versions: page
                .versions
                .into_iter()
                .map(|v| super::ObjectVersion { key: with_bucket(v.key), ..v })
                .collect(),
            next: page.next.map(|m| VersionMarker { key: with_bucket(m.key), ..m }),
        })
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        let (store, bucket, rest) = self.object("HeadObject", key)?;
        store.head_version(rest, version_id).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        let (store, bucket, rest) = self.object("GetObject", key)?;
        store.get_version_stream(rest, version_id, range).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        let (store, bucket) = bucket_root("GetBucketSetting", self, root)?;
        store.get_bucket_setting("", which).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        let (store, bucket) = bucket_root("PutBucketSetting", self, root)?;
        store.put_bucket_setting("", which, value).await.map_err(|e| in_bucket(bucket, e))
    }

    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        let (store, bucket) = bucket_root("DeleteBucketSetting", self, root)?;
        store.delete_bucket_setting("", which).await.map_err(|e| in_bucket(bucket, e))
    }
}

/// Why `name` cannot name a bucket under S3's naming rules (which XOS follows), if it
/// cannot.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Some("a bucket name has 3 to 63 characters");
    }
    if !bytes.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-') {
        return Some("a bucket name has only lowercase letters, digits, dots and hyphens");
    }
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Some("a bucket name begins and ends with a letter or a digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("a bucket name has no dot next to another dot or a hyphen");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("a bucket name is not an IP address");
    }
    if name.starts_with("xn--") || name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Some("a bucket name does not begin with xn-- nor end with -s3alias or --ol-s3");
    }
    None
}

/// The key in `bucket` of a copy's `source`: copies stay within one bucket.
fn same_bucket<'k>(op: &'static str, bucket: &str, source: &'k str) -> Result<&'k str, ObjectError> {
    match source.split_once('/') {
        Some((b, rest)) if b == bucket && !rest.is_empty() => Ok(rest),
        _ => Err(ObjectError::new(ErrorKind::Rejected, op, source)
            .with_message(format!("copies stay within one bucket: the source is not in bucket {bucket}"))),
    }
}

/// The store and name of the bucket whose root is `root` (`BUCKET/`).
fn bucket_root<'r>(
    op: &'static str,
    store: &AccountStore,
    root: &'r str,
) -> Result<(Arc<dyn ObjectStore>, &'r str), ObjectError> {
    match root.strip_suffix('/') {
        Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => Ok((store.account.store(bucket), bucket)),
        _ => Err(ObjectError::new(ErrorKind::Rejected, op, root).with_message("settings belong to a bucket's root")),
    }
}

/// Buckets in memory, each a [`super::MemoryStore`], for tests of the core.
#[cfg(test)]
pub mod memory {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::{Fault, FaultRule, FaultyStore, MemoryStore};

    #[derive(Default)]
    pub struct MemoryBuckets {
        buckets: Mutex<BTreeMap<String, Arc<MemoryStore>>>,
    }

    impl MemoryBuckets {
        pub fn with(names: &[&str]) -> MemoryBuckets {
            let all = MemoryBuckets::default();
            for name in names {
                all.buckets.lock().insert(name.to_string(), Arc::new(MemoryStore::default()));
            }
            all
        }

        pub fn store(&self, name: &str) -> Option<Arc<MemoryStore>> {
            self.buckets.lock().get(name).cloned()
        }
    }

    #[async_trait]
    impl Buckets for MemoryBuckets {
        async fn list_buckets(&self) -> Result<Vec<BucketSummary>, ObjectError> {
            Ok(self.buckets.lock().keys().map(|name| BucketSummary { name: name.clone(), created: None }).collect())
        }

        async fn create_bucket(&self, name: &str, _acl: Option<&str>) -> Result<(), ObjectError> {
            let mut buckets = self.buckets.lock();
            if buckets.contains_key(name) {
                return Err(ObjectError::new(ErrorKind::AlreadyExists, "CreateBucket", ""));
            }
            buckets.insert(name.to_string(), Arc::new(MemoryStore::default()));
            Ok(())
        }

        async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
            let mut buckets = self.buckets.lock();
            let store =
                buckets.get(name).ok_or_else(|| ObjectError::new(ErrorKind::NoSuchBucket, "DeleteBucket", ""))?;
            if !store.keys().is_empty() || !store.unfinished_uploads().is_empty() {
                return Err(ObjectError::new(ErrorKind::NotEmpty, "DeleteBucket", ""));
            }
            buckets.remove(name);
            Ok(())
        }

        fn bucket(&self, name: &str) -> Arc<dyn ObjectStore> {
            match self.store(name) {
                Some(store) => store,
                None => {
                    let missing = FaultyStore::new(Arc::new(MemoryStore::default()), 0);
                    missing.add(FaultRule::new(Fault::Error(ErrorKind::NoSuchBucket)));
                    Arc::new(missing)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryBuckets;
    use super::*;

    fn account(names: &[&str]) -> (Arc<MemoryBuckets>, AccountStore) {
        let buckets = Arc::new(MemoryBuckets::with(names));
        let account = Arc::new(Account::new(buckets.clone(), Duration::from_secs(60)));
        (buckets, AccountStore::new(account))
    }

    #[tokio::test]
    async fn the_top_lists_the_buckets_and_each_bucket_starts_with_its_marker() {
        let (buckets, store) = account(&["alpha", "beta"]);
        store.put_object("alpha/d/x", Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
        assert_eq!(buckets.store("alpha").unwrap().keys(), ["d/x"], "the key went to its bucket, without it");

        let top = store.list_page("", None, 1000).await.unwrap();
        assert_eq!(top.common_prefixes, ["alpha/", "beta/"]);
        assert!(top.objects.is_empty());

        let alpha = store.list_page("alpha/", None, 1000).await.unwrap();
        assert_eq!(alpha.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["alpha/"]);
        assert_eq!(alpha.common_prefixes, ["alpha/d/"]);
        let beta = store.list_page("beta/", None, 1).await.unwrap();
        assert_eq!(beta.objects.len(), 1, "an empty bucket still has its marker");
        assert!(store.head_object("beta/").await.unwrap_err().is(ErrorKind::NotFound), "the marker is not stored");
        assert!(store.head_object("beta").await.unwrap_err().is(ErrorKind::NotFound), "no objects at the top");
        assert_eq!(store.get_range("alpha/d/x", 0..1).await.unwrap(), Bytes::from_static(b"x"));
    }

    #[tokio::test]
    async fn a_missing_bucket_is_a_missing_directory() {
        let (_, store) = account(&["alpha"]);
        let page = store.list_page("gone/", None, 1).await.unwrap();
        assert!(page.objects.is_empty() && page.common_prefixes.is_empty());
        let err = store.head_object("gone/x").await.unwrap_err();
        assert!(err.is(ErrorKind::NotFound));
        assert_eq!(err.key, "gone/x", "errors name the key with its bucket");
    }

    #[tokio::test]
    async fn copies_stay_within_a_bucket_and_batches_are_split_by_bucket() {
        let (buckets, store) = account(&["alpha", "beta"]);
        let opts = PutOptions::default();
        for key in ["alpha/a", "alpha/b", "beta/c"] {
            store.put_object(key, Bytes::from_static(b"1"), &opts).await.unwrap();
        }
        store.copy_object("alpha/a", None, "alpha/a2", None).await.unwrap();
        let across = store.copy_object("alpha/a", None, "beta/a", None).await.unwrap_err();
        assert!(across.is(ErrorKind::Rejected));

        let refused = store.delete_objects(&["alpha/a".into(), "beta/c".into(), "top".into()]).await.unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "top");
        assert_eq!(buckets.store("alpha").unwrap().keys(), ["a2", "b"]);
        assert!(buckets.store("beta").unwrap().keys().is_empty());
    }

    #[tokio::test]
    async fn uploads_are_listed_with_their_bucket_and_continue_from_a_marker() {
        let (_, store) = account(&["alpha"]);
        let opts = PutOptions::default();
        let first = store.create_multipart_upload("alpha/x", &opts).await.unwrap();
        store.create_multipart_upload("alpha/y", &opts).await.unwrap();
        let page = store.list_multipart_uploads("alpha/", None, 1).await.unwrap();
        assert_eq!(page.uploads[0].key, "alpha/x");
        assert_eq!(page.uploads[0].upload_id, first);
        let next = store.list_multipart_uploads("alpha/", page.next, 1).await.unwrap();
        assert_eq!(next.uploads[0].key, "alpha/y");
        assert!(store.list_multipart_uploads("", None, 10).await.unwrap_err().is(ErrorKind::Rejected));
    }

    #[test]
    fn bucket_names_follow_the_naming_rules() {
        for good in ["abc", "my-bucket.2026", "a1b", &"x".repeat(63)] {
            assert_eq!(bucket_name_problem(good), None, "{good}");
        }
        for bad in ["ab", &"x".repeat(64), "My-Bucket", "a_b", "-abc", "abc.", "a..b", "a.-b", "192.168.1.1", "xn--abc"]
        {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_no_bucket_could_have_are_not_asked_about_unless_listed() {
        let buckets = Arc::new(MemoryBuckets::with(&["alpha", "Legacy_Name"]));
        let store = AccountStore::new(Arc::new(Account::new(buckets.clone(), Duration::from_secs(60))));
        // A file manager's probes at the top (.Trash-0, .hidden) send no request.
        let page = store.list_page(".Trash-0/", None, 1).await.unwrap();
        assert!(page.objects.is_empty() && page.common_prefixes.is_empty());
        // A bucket made before today's naming rules is still reachable.
        assert_eq!(store.list_page("Legacy_Name/", None, 1).await.unwrap().objects.len(), 1);
    }

    #[tokio::test]
    async fn the_bucket_list_is_kept_for_the_ttl_and_renewed_by_changes() {
        let buckets = Arc::new(MemoryBuckets::with(&["alpha"]));
        let account = Account::new(buckets.clone(), Duration::from_secs(60));
        assert_eq!(account.list().await.unwrap().len(), 1);
        buckets.create_bucket("elsewhere", None).await.unwrap();
        assert_eq!(account.list().await.unwrap().len(), 1, "kept within the TTL");
        account.create("beta", None).await.unwrap();
        let names: Vec<String> = account.list().await.unwrap().iter().map(|b| b.name.clone()).collect();
        assert_eq!(names, ["alpha", "beta", "elsewhere"]);
        assert!(account.create("beta", None).await.unwrap_err().is(ErrorKind::AlreadyExists));
    }
}
