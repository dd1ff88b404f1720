//! [`MemoryStore`]: one bucket held in memory, answering as Amazon S3 does (flat keys,
//! quoted MD5 ETags, conditional reads and copies, multipart uploads and their refusals),
//! so the core can be tested without a server. It also counts requests per operation and
//! lets tests look at what is stored.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::etag::{hex, md5, quoted_etag, same_etag};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use parking_lot::{Mutex, MutexGuard};

use super::{
    BucketSetting, CompletedPart, ErrorKind, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, ObjectSummary,
    ObjectVersion, Precondition, PutOptions, Tags, UnfinishedUpload, UploadMarker, UploadPage, VersionMarker,
    VersionPage,
};

/// S3's smallest part, the last one excepted.
const DEFAULT_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
/// S3 answers at most this many entries per listing page, whatever was asked.
const MAX_PAGE: usize = 1000;
const MAX_DELETE_KEYS: usize = 1000;
/// What S3 reports for an object stored without a content type.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// Bodies are delivered in pieces of this size, so streaming consumers see several chunks.
/// The version id of objects in a bucket that never had versioning on.
const NULL_VERSION: &str = "null";

const BODY_CHUNK: usize = 64 * 1024;

/// An object as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub data: Bytes,
    /// Quoted, as S3 sends it: `"<md5 hex>"`, or `"<md5 of the part digests>-<parts>"`.
    pub etag: String,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
    /// `None` for STANDARD.
    pub storage_class: Option<String>,
    /// Millisecond precision, as S3 keeps it; strictly increasing from one write to the next.
    pub last_modified: SystemTime,
    pub tags: Tags,
    /// The canned ACL.
    pub acl: String,
}

/// One bucket of S3 in memory; clones share their contents.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    min_part_size: u64,
    state: Mutex<State>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared { min_part_size: DEFAULT_MIN_PART_SIZE, state: Mutex::default() }
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, StoredObject>,
    /// By upload id.
    uploads: BTreeMap<String, Upload>,
    uploads_created: u64,
    last_write: Option<SystemTime>,
    requests: HashMap<&'static str, u64>,
    settings: HashMap<BucketSetting, String>,
}

struct Upload {
    key: String,
    initiated: SystemTime,
    content_type: String,
    metadata: HashMap<String, String>,
    storage_class: Option<String>,
    tags: Tags,
    acl: String,
    parts: BTreeMap<i32, Part>,
}

struct Part {
    data: Bytes,
    md5: [u8; 16],
}

impl State {
    /// The time of a write: now to the millisecond, but always after the previous write, so
    /// tests can tell versions apart by time.
    fn write_time(&mut self) -> SystemTime {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let now = UNIX_EPOCH + Duration::from_millis(since_epoch.as_millis() as u64);
        let time = match self.last_write {
            Some(last) if now <= last => last + Duration::from_millis(1),
            _ => now,
        };
        self.last_write = Some(time);
        time
    }

    fn object(&self, op: &'static str, key: &str) -> Result<&StoredObject, ObjectError> {
        self.objects.get(key).ok_or_else(|| no_such_key(op, key))
    }

    /// Refuses a write whose condition the object at `key` does not meet.
    fn check(&self, op: &'static str, key: &str, condition: &Precondition) -> Result<(), ObjectError> {
        match (condition, self.objects.get(key)) {
            (Precondition::None, _) | (Precondition::Absent, None) => Ok(()),
            (Precondition::Matches(_), None) => Err(no_such_key(op, key)),
            (Precondition::Matches(etag), Some(o)) if same_etag(etag, &o.etag) => Ok(()),
            _ => Err(precondition_failed(op, key)),
        }
    }

    fn upload(&mut self, op: &'static str, key: &str, upload_id: &str) -> Result<&mut Upload, ObjectError> {
        // An upload id only names an upload together with the key it was started for.
        match self.uploads.get_mut(upload_id) {
            Some(upload) if upload.key == key => Ok(upload),
            _ => Err(ObjectError::new(ErrorKind::NotFound, op, key)
                .with_status(404)
                .with_code("NoSuchUpload")
                .with_message(format!("The specified upload does not exist: {upload_id}"))),
        }
    }
}

impl MemoryStore {
    /// A store whose multipart uploads accept parts down to `bytes` (S3: 5 MiB), so tests
    /// can complete uploads of small parts.
    pub fn with_min_part_size(bytes: u64) -> MemoryStore {
        MemoryStore { shared: Arc::new(Shared { min_part_size: bytes, state: Mutex::default() }) }
    }

    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.shared.state.lock().objects.get(key).cloned()
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.shared.state.lock().objects.keys().cloned().collect()
    }

    /// The uploads neither completed nor aborted, in key and upload id order.
    pub fn unfinished_uploads(&self) -> Vec<UnfinishedUpload> {
        let mut uploads: Vec<UnfinishedUpload> = self
            .shared
            .state
            .lock()
            .uploads
            .iter()
            .map(|(id, u)| UnfinishedUpload { key: u.key.clone(), upload_id: id.clone(), initiated: Some(u.initiated) })
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        uploads
    }

    /// How many `op` requests (`GetObject`, `UploadPart`, ...) were received, failed ones
    /// included.
    pub fn requests(&self, op: &str) -> u64 {
        self.shared.state.lock().requests.get(op).copied().unwrap_or(0)
    }

    pub fn reset_requests(&self) {
        self.shared.state.lock().requests.clear();
    }

    /// Counts one `op` request and locks the contents for it.
    fn begin(&self, op: &'static str) -> MutexGuard<'_, State> {
        let mut state = self.shared.state.lock();
        *state.requests.entry(op).or_default() += 1;
        state
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        // Nothing to look at, but the request is counted.
        drop(self.begin("HeadBucket"));
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        const OP: &str = "ListObjects";
        let state = self.begin(OP);
        let max = page_size(OP, prefix, max_keys)?;
        Ok(list_sorted(&state.objects, prefix, delimiter, continuation.as_deref(), max, |key, object| ObjectSummary {
            key: key.to_string(),
            size: object.data.len() as u64,
            last_modified: Some(object.last_modified),
            etag: Some(object.etag.clone()),
        }))
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let state = self.begin("HeadObject");
        let object = state.object("HeadObject", key)?;
        Ok(ObjectInfo {
            size: object.data.len() as u64,
            content_type: Some(object.content_type.clone()),
            // HEAD sends Last-Modified as an HTTP date, to the second, while listings keep the
            // milliseconds: the core must not expect the two to be equal.
            last_modified: Some(whole_seconds(object.last_modified)),
            etag: Some(object.etag.clone()),
            storage_class: object.storage_class.clone(),
            metadata: object.metadata.clone(),
            version_id: None,
        })
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        const OP: &str = "GetObject";
        let state = self.begin(OP);
        if range.is_empty() {
            return Err(invalid_argument(OP, key, format!("empty range {range:?}")));
        }
        let object = state.object(OP, key)?;
        if etag.is_some_and(|e| !same_etag(e, &object.etag)) {
            return Err(precondition_failed(OP, key));
        }
        let size = object.data.len() as u64;
        if range.start >= size {
            return Err(invalid_range(OP, key, size));
        }
        let data = object.data.slice(range.start as usize..range.end.min(size) as usize);
        let chunks: Vec<Result<Bytes, ObjectError>> = (0..data.len())
            .step_by(BODY_CHUNK)
            .map(|at| Ok(data.slice(at..(at + BODY_CHUNK).min(data.len()))))
            .collect();
        Ok(ObjectBody::new(stream::iter(chunks).boxed()))
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let mut state = self.begin("PutObject");
        state.check("PutObject", key, condition)?;
        let etag = quoted_etag(&md5(&body));
        let last_modified = state.write_time();
        let object = StoredObject {
            data: body,
            etag: etag.clone(),
            content_type: content_type(opts),
            metadata: opts.metadata.clone(),
            storage_class: storage_class(opts),
            last_modified,
            tags: opts.tags.clone().unwrap_or_default(),
            acl: acl(opts),
        };
        state.objects.insert(key.to_string(), object);
        Ok(Some(etag))
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        const OP: &str = "CopyObject";
        let mut state = self.begin(OP);
        let original = state.object(OP, source)?;
        if etag.is_some_and(|e| !same_etag(e, &original.etag)) {
            return Err(precondition_failed(OP, source));
        }
        if source == key && opts.is_none() {
            return Err(ObjectError::new(ErrorKind::Rejected, OP, key)
                .with_status(400)
                .with_code("InvalidRequest")
                .with_message(
                "This copy request is illegal because it is trying to copy an object to itself without changing the \
                 object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        // A copy is stored in one piece, so a multipart source's ETag becomes a plain MD5.
        let mut copy = original.clone();
        copy.etag = quoted_etag(&md5(&copy.data));
        if let Some(opts) = opts {
            copy.content_type = content_type(opts);
            copy.metadata = opts.metadata.clone();
            copy.storage_class = storage_class(opts);
            copy.acl = acl(opts);
            if let Some(tags) = &opts.tags {
                copy.tags = tags.clone();
            }
        } else {
            // S3 does not copy an ACL: the copy gets the default.
            copy.acl = acl(&PutOptions::default());
        }
        copy.last_modified = state.write_time();
        let etag = copy.etag.clone();
        state.objects.insert(key.to_string(), copy);
        Ok(Some(etag))
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        self.begin("DeleteObject").objects.remove(key);
        Ok(())
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        const OP: &str = "DeleteObjects";
        let mut state = self.begin(OP);
        if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
            let first = keys.first().map(String::as_str).unwrap_or_default();
            return Err(ObjectError::new(ErrorKind::Rejected, OP, first)
                .with_status(400)
                .with_code("MalformedXML")
                .with_message(format!("a request deletes 1 to {MAX_DELETE_KEYS} keys, not {}", keys.len())));
        }
        for key in keys {
            state.objects.remove(key);
        }
        Ok(Vec::new())
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        let mut state = self.begin("CreateMultipartUpload");
        state.uploads_created += 1;
        // Zero-padded so that upload id order is creation order, as S3 lists them.
        let upload_id = format!("memory-upload-{:012}", state.uploads_created);
        let upload = Upload {
            key: key.to_string(),
            initiated: state.write_time(),
            content_type: content_type(opts),
            metadata: opts.metadata.clone(),
            storage_class: storage_class(opts),
            tags: opts.tags.clone().unwrap_or_default(),
            acl: acl(opts),
            parts: BTreeMap::new(),
        };
        state.uploads.insert(upload_id.clone(), upload);
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        const OP: &str = "UploadPart";
        let mut state = self.begin(OP);
        let upload = state.upload(OP, key, upload_id)?;
        check_part_number(OP, key, number)?;
        let md5 = md5(&body);
        upload.parts.insert(number, Part { data: body, md5 });
        Ok(CompletedPart { number, etag: quoted_etag(&md5) })
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
        let mut state = self.begin(OP);
        state.upload(OP, key, upload_id)?;
        check_part_number(OP, key, number)?;
        if range.is_empty() {
            return Err(invalid_argument(OP, source_key, format!("empty copy source range {range:?}")));
        }
        let source = state.object(OP, source_key)?;
        if !same_etag(source_etag, &source.etag) {
            return Err(precondition_failed(OP, source_key));
        }
        let size = source.data.len() as u64;
        // Unlike a GET, a copy range is not clamped: it must lie within the source.
        if range.end > size {
            return Err(invalid_range(OP, source_key, size));
        }
        let data = source.data.slice(range.start as usize..range.end as usize);
        let md5 = md5(&data);
        // Looked up again to write: the first lookup's borrow could not outlive reading the source.
        state.upload(OP, key, upload_id)?.parts.insert(number, Part { data, md5 });
        Ok(CompletedPart { number, etag: quoted_etag(&md5) })
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        const OP: &str = "CompleteMultipartUpload";
        let mut state = self.begin(OP);
        state.check(OP, key, condition)?;
        let min_part_size = self.shared.min_part_size;
        let upload = state.upload(OP, key, upload_id)?;
        let refuse = |code: &str, message: String| {
            ObjectError::new(ErrorKind::Rejected, OP, key).with_status(400).with_code(code).with_message(message)
        };
        if parts.is_empty() {
            return Err(refuse("MalformedXML", "a completion names at least one part".into()));
        }
        if parts.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(refuse("InvalidPartOrder", "The list of parts was not in ascending order.".into()));
        }
        let mut chosen = Vec::with_capacity(parts.len());
        for named in parts {
            match upload.parts.get(&named.number) {
                Some(part) if same_etag(&named.etag, &quoted_etag(&part.md5)) => chosen.push(part),
                _ => {
                    return Err(refuse(
                        "InvalidPart",
                        format!("part {} was not uploaded or its ETag is not {}", named.number, named.etag),
                    ))
                }
            }
        }
        let (_, all_but_last) = chosen.split_last().expect("at least one part");
        if let Some(small) = all_but_last.iter().position(|p| (p.data.len() as u64) < min_part_size) {
            return Err(refuse(
                "EntityTooSmall",
                format!("part {} is smaller than the minimum of {min_part_size} bytes", parts[small].number),
            ));
        }
        let mut data = BytesMut::with_capacity(chosen.iter().map(|p| p.data.len()).sum());
        let mut digests = Vec::with_capacity(chosen.len() * 16);
        for part in &chosen {
            data.extend_from_slice(&part.data);
            digests.extend_from_slice(&part.md5);
        }
        let etag = format!("\"{}-{}\"", hex(&md5(&digests)), chosen.len());
        let upload = state.uploads.remove(upload_id).expect("the upload was found above");
        let object = StoredObject {
            data: data.freeze(),
            etag: etag.clone(),
            content_type: upload.content_type,
            metadata: upload.metadata,
            storage_class: upload.storage_class,
            last_modified: state.write_time(),
            tags: upload.tags,
            acl: upload.acl,
        };
        state.objects.insert(key.to_string(), object);
        Ok(Some(etag))
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        const OP: &str = "AbortMultipartUpload";
        let mut state = self.begin(OP);
        state.upload(OP, key, upload_id)?;
        state.uploads.remove(upload_id);
        Ok(())
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        const OP: &str = "ListMultipartUploads";
        let state = self.begin(OP);
        let max = page_size(OP, prefix, max_uploads)?;
        let mut matching: Vec<(&String, &String, SystemTime)> = state
            .uploads
            .iter()
            .filter(|(id, u)| {
                u.key.starts_with(prefix) && after.as_ref().is_none_or(|m| (&u.key, *id) > (&m.key, &m.upload_id))
            })
            .map(|(id, u)| (&u.key, id, u.initiated))
            .collect();
        matching.sort();
        let truncated = matching.len() > max;
        let uploads: Vec<UnfinishedUpload> = matching
            .into_iter()
            .take(max)
            .map(|(key, id, initiated)| UnfinishedUpload {
                key: key.clone(),
                upload_id: id.clone(),
                initiated: Some(initiated),
            })
            .collect();
        let next = match uploads.last() {
            Some(last) if truncated => Some(UploadMarker { key: last.key.clone(), upload_id: last.upload_id.clone() }),
            _ => None,
        };
        Ok(UploadPage { uploads, next })
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        const OP: &str = "GetObjectTagging";
        Ok(self.begin(OP).object(OP, key)?.tags.clone())
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        const OP: &str = "PutObjectTagging";
        let mut state = self.begin(OP);
        state.objects.get_mut(key).ok_or_else(|| no_such_key(OP, key))?.tags = tags.clone();
        Ok(())
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        const OP: &str = "GetObjectAcl";
        Ok(self.begin(OP).object(OP, key)?.acl.clone())
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        const OP: &str = "PutObjectAcl";
        let mut state = self.begin(OP);
        state.objects.get_mut(key).ok_or_else(|| no_such_key(OP, key))?.acl = canned.to_string();
        Ok(())
    }

    async fn presign_get(&self, key: &str, _: Option<&str>, _: Duration) -> Result<String, ObjectError> {
        Err(not_implemented("GetObject", key, "objects in memory have no URL"))
    }

    /// Keeps one version of each key (as a bucket that never had versioning on): `null`.
    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        const OP: &str = "ListObjectVersions";
        let state = self.begin(OP);
        let max = page_size(OP, prefix, max_keys)?;
        let start = match &after {
            Some(m) if m.key.as_str() >= prefix => Bound::Excluded(m.key.as_str()),
            _ => Bound::Included(prefix),
        };
        let mut page = VersionPage::default();
        for (key, object) in state.objects.range::<str, _>((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if page.versions.len() == max {
                page.next =
                    page.versions.last().map(|v| VersionMarker { key: v.key.clone(), version_id: NULL_VERSION.into() });
                break;
            }
            page.versions.push(ObjectVersion {
                key: key.clone(),
                version_id: NULL_VERSION.into(),
                last_modified: Some(object.last_modified),
                size: object.data.len() as u64,
                etag: Some(object.etag.clone()),
                is_latest: true,
                delete_marker: false,
            });
        }
        Ok(page)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        match version_id {
            NULL_VERSION => self.head_object(key).await,
            other => Err(no_such_version("HeadObject", key, other)),
        }
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        match version_id {
            NULL_VERSION => self.get_stream(key, range, None).await,
            other => Err(no_such_version("GetObject", key, other)),
        }
    }

    async fn get_bucket_setting(&self, _root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        Ok(self.begin("GetBucketSetting").settings.get(&which).cloned())
    }

    async fn put_bucket_setting(&self, _root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        if which == BucketSetting::Versioning {
            return Err(not_implemented("PutBucketVersioning", "", "the memory store keeps one version of each key"));
        }
        self.begin("PutBucketSetting").settings.insert(which, value.to_string());
        Ok(())
    }

    async fn delete_bucket_setting(&self, _root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        self.begin("DeleteBucketSetting").settings.remove(&which);
        Ok(())
    }
}

/// The page size S3 uses when asked for `requested` entries.
fn page_size(op: &'static str, prefix: &str, requested: i32) -> Result<usize, ObjectError> {
    match usize::try_from(requested) {
        Ok(n) => Ok(n.min(MAX_PAGE)),
        Err(_) => Err(invalid_argument(op, prefix, format!("page size {requested} is negative"))),
    }
}

fn check_part_number(op: &'static str, key: &str, number: i32) -> Result<(), ObjectError> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(invalid_argument(op, key, format!("Part number must be an integer between 1 and {MAX_PART_NUMBER}")))
    }
}

fn content_type(opts: &PutOptions) -> String {
    opts.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string())
}

/// S3 reports no storage class for STANDARD, however it was asked for.
fn storage_class(opts: &PutOptions) -> Option<String> {
    opts.storage_class.clone().filter(|c| c != "STANDARD")
}

/// One page of a listing of `objects` (sorted by key, as S3 keeps them) under `prefix`,
/// grouped at `delimiter`, after `marker`, with S3's paging rules.
pub(super) fn list_sorted<T>(
    objects: &BTreeMap<String, T>,
    prefix: &str,
    delimiter: Option<&str>,
    marker: Option<&str>,
    max: usize,
    summary: impl Fn(&str, &T) -> ObjectSummary,
) -> ListPage {
    // S3 ignores an empty delimiter.
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let start = match marker {
        Some(m) if m >= prefix => Bound::Excluded(m),
        _ => Bound::Included(prefix),
    };
    let mut page = ListPage::default();
    let mut last_returned: Option<String> = None;
    let mut truncated = false;
    for (key, object) in objects.range::<str, _>((start, Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            break;
        }
        let group = delimiter.and_then(|d| key[prefix.len()..].find(d).map(|i| &key[..prefix.len() + i + d.len()]));
        if let Some(group) = group {
            // Keys under one prefix are contiguous, so a group is only seen again right
            // after it was taken; a marker equal to the group means it was on an
            // earlier page.
            if page.common_prefixes.last().is_some_and(|p| p == group) || marker.is_some_and(|m| group <= m) {
                continue;
            }
        }
        if page.objects.len() + page.common_prefixes.len() == max {
            truncated = true;
            break;
        }
        match group {
            Some(group) => {
                page.common_prefixes.push(group.to_string());
                last_returned = Some(group.to_string());
            }
            None => {
                page.objects.push(summary(key, object));
                last_returned = Some(key.clone());
            }
        }
    }
    if truncated {
        page.next = last_returned;
    }
    page
}

fn acl(opts: &PutOptions) -> String {
    opts.acl.clone().unwrap_or_else(|| "private".into())
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
}

fn no_such_key(op: &'static str, key: &str) -> ObjectError {
    ObjectError::new(ErrorKind::NotFound, op, key)
        .with_status(404)
        .with_code("NoSuchKey")
        .with_message("The specified key does not exist.")
}

fn precondition_failed(op: &'static str, key: &str) -> ObjectError {
    ObjectError::new(ErrorKind::PreconditionFailed, op, key)
        .with_status(412)
        .with_code("PreconditionFailed")
        .with_message("At least one of the pre-conditions you specified did not hold")
}

fn invalid_range(op: &'static str, key: &str, size: u64) -> ObjectError {
    ObjectError::new(ErrorKind::InvalidRange, op, key)
        .with_status(416)
        .with_code("InvalidRange")
        .with_message(format!("The requested range is not satisfiable: the object has {size} bytes"))
}

fn no_such_version(op: &'static str, key: &str, version_id: &str) -> ObjectError {
    ObjectError::new(ErrorKind::NotFound, op, key)
        .with_status(404)
        .with_code("NoSuchVersion")
        .with_message(format!("The specified version {version_id} does not exist."))
}

fn not_implemented(op: &'static str, key: &str, why: &str) -> ObjectError {
    ObjectError::new(ErrorKind::Rejected, op, key).with_status(501).with_code("NotImplemented").with_message(why)
}

fn invalid_argument(op: &'static str, key: &str, message: String) -> ObjectError {
    ObjectError::new(ErrorKind::Rejected, op, key).with_status(400).with_code("InvalidArgument").with_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_PART: u64 = 16;

    fn opts(content_type: &str, meta: &[(&str, &str)], storage_class: Option<&str>) -> PutOptions {
        PutOptions {
            content_type: Some(content_type.to_string()),
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            acl: None,
            storage_class: storage_class.map(str::to_string),
            tags: None,
        }
    }

    async fn put(store: &MemoryStore, key: &str, data: &[u8]) -> String {
        store.put_object(key, Bytes::copy_from_slice(data), &PutOptions::default()).await.unwrap().unwrap()
    }

    fn md5_hex(data: &[u8]) -> String {
        hex(&md5(data))
    }

    fn error_parts(e: &ObjectError) -> (ErrorKind, Option<u16>, Option<&str>) {
        (e.kind, e.status, e.code.as_deref())
    }

    async fn collect(mut body: ObjectBody) -> (Vec<u8>, usize) {
        let (mut data, mut chunks) = (Vec::new(), 0);
        while let Some(chunk) = body.next_chunk().await.unwrap() {
            data.extend_from_slice(&chunk);
            chunks += 1;
        }
        (data, chunks)
    }

    #[tokio::test]
    async fn put_then_head_reports_quoted_md5_size_type_metadata_and_class() {
        let store = MemoryStore::default();
        let etag = store
            .put_object(
                "a.txt",
                Bytes::from_static(b"hello"),
                &opts("text/plain", &[("mode", "644")], Some("STANDARD_IA")),
            )
            .await
            .unwrap();
        assert_eq!(etag.as_deref(), Some(format!("\"{}\"", md5_hex(b"hello")).as_str()));
        let info = store.head_object("a.txt").await.unwrap();
        assert_eq!(info.size, 5);
        assert_eq!(info.etag, etag);
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(info.metadata.get("mode").map(String::as_str), Some("644"));
    }

    #[tokio::test]
    async fn defaults_are_binary_octet_stream_and_no_class_for_standard() {
        let store = MemoryStore::default();
        put(&store, "plain", b"x").await;
        store.put_object("standard", Bytes::new(), &opts("text/plain", &[], Some("STANDARD"))).await.unwrap();
        let plain = store.head_object("plain").await.unwrap();
        assert_eq!(plain.content_type.as_deref(), Some("binary/octet-stream"));
        assert_eq!(plain.storage_class, None);
        assert_eq!(store.head_object("standard").await.unwrap().storage_class, None);
        assert_eq!(store.object("standard").unwrap().storage_class, None);
    }

    #[tokio::test]
    async fn keys_are_flat_so_a_key_and_its_children_coexist() {
        let store = MemoryStore::default();
        put(&store, "a", b"file").await;
        put(&store, "a/b", b"child").await;
        put(&store, "dir/", b"").await;
        assert_eq!(store.keys(), ["a", "a/b", "dir/"]);
        assert_eq!(store.head_object("dir/").await.unwrap().size, 0);
        let e = store.head_object("dir").await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::NotFound, Some(404), Some("NoSuchKey")));
        assert_eq!((e.op, e.key.as_str()), ("HeadObject", "dir"));
    }

    #[tokio::test]
    async fn every_write_is_later_than_the_one_before() {
        let store = MemoryStore::default();
        put(&store, "k", b"1").await;
        let first = store.object("k").unwrap().last_modified;
        put(&store, "k", b"2").await;
        let second = store.object("k").unwrap().last_modified;
        assert!(second > first);
        let listed = store.list("", None, None, 10).await.unwrap().objects[0].last_modified;
        assert_eq!(listed, Some(second));
    }

    #[tokio::test]
    async fn head_reports_last_modified_to_the_second_like_an_http_date() {
        let store = MemoryStore::default();
        put(&store, "k", b"1").await;
        let stored = store.object("k").unwrap().last_modified;
        let headed = store.head_object("k").await.unwrap().last_modified.unwrap();
        assert_eq!(headed.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(), 0);
        assert!(headed <= stored && stored.duration_since(headed).unwrap() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn get_streams_the_range_in_several_chunks_and_clamps_its_end() {
        let store = MemoryStore::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        put(&store, "big", &data).await;
        let (got, chunks) = collect(store.get_stream("big", 0..200_000, None).await.unwrap()).await;
        assert_eq!(got, data);
        assert_eq!(chunks, 4);
        let (got, _) = collect(store.get_stream("big", 199_990..300_000, None).await.unwrap()).await;
        assert_eq!(got, &data[199_990..]);
        assert_eq!(store.get_range("big", 5..9).await.unwrap(), &data[5..9]);
    }

    #[tokio::test]
    async fn get_refuses_missing_keys_ranges_past_the_end_and_empty_ranges() {
        let store = MemoryStore::default();
        put(&store, "k", b"0123456789").await;
        let missing = store.get_stream("nope", 0..1, None).await.err().unwrap();
        assert_eq!(error_parts(&missing), (ErrorKind::NotFound, Some(404), Some("NoSuchKey")));
        assert_eq!(missing.op, "GetObject");
        let past = store.get_stream("k", 10..20, None).await.err().unwrap();
        assert_eq!(error_parts(&past), (ErrorKind::InvalidRange, Some(416), Some("InvalidRange")));
        let empty = store.get_stream("k", 3..3, None).await.err().unwrap();
        assert_eq!(empty.kind, ErrorKind::Rejected);
    }

    #[tokio::test]
    async fn conditional_get_accepts_quoted_or_bare_etags_and_fails_on_another_version() {
        let store = MemoryStore::default();
        let etag = put(&store, "k", b"v1").await;
        let bare = etag.trim_matches('"').to_string();
        assert_eq!(store.get_range_if("k", 0..2, Some(&etag)).await.unwrap(), "v1");
        assert_eq!(store.get_range_if("k", 0..2, Some(&bare)).await.unwrap(), "v1");
        put(&store, "k", b"v2").await;
        let e = store.get_range_if("k", 0..2, Some(&etag)).await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::PreconditionFailed, Some(412), Some("PreconditionFailed")));
    }

    #[tokio::test]
    async fn copy_keeps_metadata_without_options_and_replaces_it_with_them() {
        let store = MemoryStore::default();
        store
            .put_object("src", Bytes::from_static(b"data"), &opts("text/plain", &[("a", "1")], Some("GLACIER_IR")))
            .await
            .unwrap();
        store.copy_object("src", None, "kept", None).await.unwrap();
        let kept = store.object("kept").unwrap();
        assert_eq!(kept.data, "data");
        assert_eq!(kept.content_type, "text/plain");
        assert_eq!(kept.metadata.get("a").map(String::as_str), Some("1"));
        assert_eq!(kept.storage_class.as_deref(), Some("GLACIER_IR"));

        store.copy_object("src", None, "replaced", Some(&opts("image/png", &[("b", "2")], None))).await.unwrap();
        let replaced = store.object("replaced").unwrap();
        assert_eq!(replaced.content_type, "image/png");
        assert_eq!(replaced.metadata, HashMap::from([("b".to_string(), "2".to_string())]));
        assert_eq!(replaced.storage_class, None);
        assert_eq!(replaced.etag, store.object("src").unwrap().etag);
    }

    #[tokio::test]
    async fn copy_refuses_a_missing_source_another_version_and_itself_unchanged() {
        let store = MemoryStore::default();
        let missing = store.copy_object("nope", None, "dst", None).await.unwrap_err();
        assert_eq!(error_parts(&missing), (ErrorKind::NotFound, Some(404), Some("NoSuchKey")));
        assert_eq!(missing.op, "CopyObject");

        let etag = put(&store, "src", b"v1").await;
        put(&store, "src", b"v2").await;
        let changed = store.copy_object("src", Some(&etag), "dst", None).await.unwrap_err();
        assert_eq!(error_parts(&changed), (ErrorKind::PreconditionFailed, Some(412), Some("PreconditionFailed")));
        assert!(store.object("dst").is_none());

        let current = store.object("src").unwrap().etag;
        store.copy_object("src", Some(current.trim_matches('"')), "dst", None).await.unwrap();
        assert_eq!(store.object("dst").unwrap().data, "v2");

        let onto_itself = store.copy_object("src", None, "src", None).await.unwrap_err();
        assert_eq!(error_parts(&onto_itself), (ErrorKind::Rejected, Some(400), Some("InvalidRequest")));
        store.copy_object("src", None, "src", Some(&opts("text/plain", &[], None))).await.unwrap();
        assert_eq!(store.object("src").unwrap().content_type, "text/plain");
    }

    #[tokio::test]
    async fn deletes_succeed_for_missing_keys_and_batches_are_capped_at_1000() {
        let store = MemoryStore::default();
        put(&store, "a", b"1").await;
        put(&store, "b", b"2").await;
        store.delete_object("a").await.unwrap();
        store.delete_object("a").await.unwrap();
        let failed = store.delete_objects(&["b".to_string(), "never".to_string()]).await.unwrap();
        assert!(failed.is_empty());
        assert!(store.keys().is_empty());

        let too_many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
        let e = store.delete_objects(&too_many).await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::Rejected, Some(400), Some("MalformedXML")));
        assert_eq!(e.op, "DeleteObjects");
        store.delete_objects(&too_many[..1000]).await.unwrap();
    }

    async fn tree() -> MemoryStore {
        let store = MemoryStore::default();
        for key in ["a", "a/1", "a/2", "a/sub/x", "b/", "b/c", "c", "d/e/f"] {
            put(&store, key, key.as_bytes()).await;
        }
        store
    }

    fn names(page: &ListPage) -> (Vec<&str>, Vec<&str>) {
        (
            page.objects.iter().map(|o| o.key.as_str()).collect(),
            page.common_prefixes.iter().map(String::as_str).collect(),
        )
    }

    #[tokio::test]
    async fn list_groups_at_the_delimiter_under_a_prefix() {
        let store = tree().await;
        let top = store.list("", Some("/"), None, 1000).await.unwrap();
        assert_eq!(names(&top), (vec!["a", "c"], vec!["a/", "b/", "d/"]));
        assert_eq!(top.next, None);
        let under_a = store.list_page("a/", None, 1000).await.unwrap();
        assert_eq!(names(&under_a), (vec!["a/1", "a/2"], vec!["a/sub/"]));
        let under_b = store.list("b/", Some("/"), None, 1000).await.unwrap();
        assert_eq!(names(&under_b), (vec!["b/", "b/c"], vec![]));
        let flat = store.list("a", None, None, 1000).await.unwrap();
        assert_eq!(names(&flat), (vec!["a", "a/1", "a/2", "a/sub/x"], vec![]));
        let entry = &flat.objects[1];
        assert_eq!(entry.size, 3);
        assert_eq!(entry.etag.as_deref(), Some(format!("\"{}\"", md5_hex(b"a/1")).as_str()));
        assert!(entry.last_modified.is_some());
    }

    #[tokio::test]
    async fn list_pages_count_keys_and_prefixes_and_continue_after_the_last() {
        let store = tree().await;
        let mut pages = Vec::new();
        let mut next = None;
        loop {
            let page = store.list("", Some("/"), next, 2).await.unwrap();
            let (objects, prefixes) = names(&page);
            pages.push((objects.join(","), prefixes.join(",")));
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        let expected = [("a", "a/"), ("c", "b/"), ("", "d/")];
        assert_eq!(pages, expected.map(|(o, p)| (o.to_string(), p.to_string())));

        let first = store.list("", Some("/"), None, 2).await.unwrap();
        assert_eq!(first.next.as_deref(), Some("a/"));
        let exact = store.list("", Some("/"), None, 5).await.unwrap();
        assert_eq!(exact.next, None);
        assert_eq!(store.list_all("").await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn list_continuation_is_exclusive_and_pages_are_capped_at_1000() {
        let store = tree().await;
        let after_a1 = store.list("a/", None, Some("a/1".into()), 10).await.unwrap();
        assert_eq!(names(&after_a1).0, ["a/2", "a/sub/x"]);
        let before_prefix = store.list("b/", None, Some("a".into()), 10).await.unwrap();
        assert_eq!(names(&before_prefix).0, ["b/", "b/c"]);

        let many = MemoryStore::default();
        for i in 0..1005 {
            put(&many, &format!("k{i:04}"), b"").await;
        }
        let page = many.list("", None, None, 5000).await.unwrap();
        assert_eq!(page.objects.len(), 1000);
        assert_eq!(page.next.as_deref(), Some("k0999"));
        assert_eq!(many.list_all("").await.unwrap().len(), 1005);
        let e = many.list("", None, None, -1).await.unwrap_err();
        assert_eq!((e.kind, e.op), (ErrorKind::Rejected, "ListObjects"));
    }

    fn part_data(byte: u8, len: u64) -> Bytes {
        Bytes::from(vec![byte; len as usize])
    }

    #[tokio::test]
    async fn multipart_upload_becomes_the_concatenation_with_a_multipart_etag() {
        let store = MemoryStore::with_min_part_size(MIN_PART);
        let id =
            store.create_multipart_upload("big", &opts("video/mp4", &[("m", "1")], Some("STANDARD_IA"))).await.unwrap();
        let p2 = store.upload_part("big", &id, 2, part_data(b'b', 5)).await.unwrap();
        let p1 = store.upload_part("big", &id, 1, part_data(b'x', MIN_PART)).await.unwrap();
        // A part sent again replaces the first.
        let p1_again = store.upload_part("big", &id, 1, part_data(b'a', MIN_PART)).await.unwrap();
        assert_ne!(p1.etag, p1_again.etag);
        assert_eq!(p1_again.etag, format!("\"{}\"", md5_hex(&part_data(b'a', MIN_PART))));
        assert_eq!(store.unfinished_uploads().len(), 1);

        let bare_p1 = CompletedPart { number: 1, etag: p1_again.etag.trim_matches('"').to_string() };
        let etag = store.complete_multipart_upload("big", &id, &[bare_p1, p2]).await.unwrap().unwrap();
        let mut digests = md5(&part_data(b'a', MIN_PART)).to_vec();
        digests.extend_from_slice(&md5(&part_data(b'b', 5)));
        assert_eq!(etag, format!("\"{}-2\"", md5_hex(&digests)));
        let object = store.object("big").unwrap();
        assert_eq!(object.data, [part_data(b'a', MIN_PART), part_data(b'b', 5)].concat());
        assert_eq!(object.etag, etag);
        assert_eq!(object.content_type, "video/mp4");
        assert_eq!(object.metadata.get("m").map(String::as_str), Some("1"));
        assert_eq!(object.storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(store.unfinished_uploads().is_empty());

        // A copy is one piece again, with a plain MD5 ETag.
        let copied = store.copy_object("big", Some(&etag), "copy", None).await.unwrap().unwrap();
        assert_eq!(copied, format!("\"{}\"", md5_hex(&object.data)));
    }

    #[tokio::test]
    async fn upload_part_copy_takes_a_range_of_the_source_version() {
        let store = MemoryStore::with_min_part_size(MIN_PART);
        let source: Vec<u8> = (0..64u8).collect();
        let etag = put(&store, "src", &source).await;
        let id = store.create_multipart_upload("dst", &PutOptions::default()).await.unwrap();
        let p1 = store.upload_part_copy("dst", &id, 1, "src", &etag, 0..32).await.unwrap();
        let p2 = store.upload_part_copy("dst", &id, 2, "src", etag.trim_matches('"'), 60..64).await.unwrap();
        assert_eq!(p1.etag, format!("\"{}\"", md5_hex(&source[..32])));
        store.complete_multipart_upload("dst", &id, &[p1, p2]).await.unwrap();
        assert_eq!(store.object("dst").unwrap().data, [&source[..32], &source[60..]].concat());
    }

    #[tokio::test]
    async fn upload_part_copy_refuses_another_version_ranges_past_the_end_and_missing_sources() {
        let store = MemoryStore::with_min_part_size(MIN_PART);
        let old = put(&store, "src", b"0123456789").await;
        let current = put(&store, "src", b"abcdefghij").await;
        let id = store.create_multipart_upload("dst", &PutOptions::default()).await.unwrap();
        let changed = store.upload_part_copy("dst", &id, 1, "src", &old, 0..4).await.unwrap_err();
        assert_eq!(error_parts(&changed), (ErrorKind::PreconditionFailed, Some(412), Some("PreconditionFailed")));
        let past = store.upload_part_copy("dst", &id, 1, "src", &current, 5..11).await.unwrap_err();
        assert_eq!(error_parts(&past), (ErrorKind::InvalidRange, Some(416), Some("InvalidRange")));
        let missing = store.upload_part_copy("dst", &id, 1, "nope", &current, 0..1).await.unwrap_err();
        assert_eq!(error_parts(&missing), (ErrorKind::NotFound, Some(404), Some("NoSuchKey")));
        assert_eq!(missing.op, "UploadPartCopy");
    }

    #[tokio::test]
    async fn unknown_upload_ids_are_no_such_upload() {
        let store = MemoryStore::default();
        put(&store, "src", b"data").await;
        let id = store.create_multipart_upload("k", &PutOptions::default()).await.unwrap();
        let no_such_upload =
            |e: ObjectError| assert_eq!(error_parts(&e), (ErrorKind::NotFound, Some(404), Some("NoSuchUpload")));
        no_such_upload(store.upload_part("k", "bogus", 1, Bytes::new()).await.unwrap_err());
        // An id names an upload only with the key it was started for.
        no_such_upload(store.upload_part("other", &id, 1, Bytes::new()).await.unwrap_err());
        no_such_upload(store.upload_part_copy("k", "bogus", 1, "src", "x", 0..1).await.unwrap_err());
        no_such_upload(store.complete_multipart_upload("k", "bogus", &[]).await.unwrap_err());
        no_such_upload(store.abort_multipart_upload("k", "bogus").await.unwrap_err());
        store.abort_multipart_upload("k", &id).await.unwrap();
        assert!(store.unfinished_uploads().is_empty());
        no_such_upload(store.abort_multipart_upload("k", &id).await.unwrap_err());
    }

    #[tokio::test]
    async fn part_numbers_are_1_to_10000() {
        let store = MemoryStore::default();
        let id = store.create_multipart_upload("k", &PutOptions::default()).await.unwrap();
        for number in [0, -1, 10_001] {
            let e = store.upload_part("k", &id, number, Bytes::from_static(b"x")).await.unwrap_err();
            assert_eq!(error_parts(&e), (ErrorKind::Rejected, Some(400), Some("InvalidArgument")));
        }
        store.upload_part("k", &id, 10_000, Bytes::from_static(b"x")).await.unwrap();
    }

    #[tokio::test]
    async fn completion_refuses_bad_order_unknown_parts_wrong_etags_and_small_parts() {
        let store = MemoryStore::with_min_part_size(MIN_PART);
        let id = store.create_multipart_upload("k", &PutOptions::default()).await.unwrap();
        let p1 = store.upload_part("k", &id, 1, part_data(1, MIN_PART)).await.unwrap();
        let p2 = store.upload_part("k", &id, 2, part_data(2, MIN_PART - 1)).await.unwrap();
        let p3 = store.upload_part("k", &id, 3, part_data(3, 1)).await.unwrap();
        let refused = |e: ObjectError, code: &str| {
            assert_eq!(error_parts(&e), (ErrorKind::Rejected, Some(400), Some(code)));
            assert_eq!(e.op, "CompleteMultipartUpload");
        };
        refused(
            store.complete_multipart_upload("k", &id, &[p2.clone(), p1.clone()]).await.unwrap_err(),
            "InvalidPartOrder",
        );
        refused(
            store.complete_multipart_upload("k", &id, &[p1.clone(), p1.clone()]).await.unwrap_err(),
            "InvalidPartOrder",
        );
        let unknown = CompletedPart { number: 4, etag: p3.etag.clone() };
        refused(store.complete_multipart_upload("k", &id, &[p1.clone(), unknown]).await.unwrap_err(), "InvalidPart");
        let wrong_etag = CompletedPart { number: 3, etag: p1.etag.clone() };
        refused(store.complete_multipart_upload("k", &id, &[p1.clone(), wrong_etag]).await.unwrap_err(), "InvalidPart");
        refused(
            store.complete_multipart_upload("k", &id, &[p1.clone(), p2.clone(), p3.clone()]).await.unwrap_err(),
            "EntityTooSmall",
        );
        refused(store.complete_multipart_upload("k", &id, &[]).await.unwrap_err(), "MalformedXML");
        // Refusals leave the upload as it was: parts may be chosen again. The last part may be small.
        assert_eq!(store.unfinished_uploads().len(), 1);
        store.complete_multipart_upload("k", &id, &[p1, p3]).await.unwrap();
        assert_eq!(store.object("k").unwrap().data.len() as u64, MIN_PART + 1);
    }

    #[tokio::test]
    async fn the_default_minimum_part_size_is_5_mib() {
        let store = MemoryStore::default();
        let id = store.create_multipart_upload("k", &PutOptions::default()).await.unwrap();
        let small = store.upload_part("k", &id, 1, part_data(0, DEFAULT_MIN_PART_SIZE - 1)).await.unwrap();
        let last = store.upload_part("k", &id, 2, part_data(0, 1)).await.unwrap();
        let e = store.complete_multipart_upload("k", &id, &[small, last.clone()]).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("EntityTooSmall"));
        let full = store.upload_part("k", &id, 1, part_data(0, DEFAULT_MIN_PART_SIZE)).await.unwrap();
        store.complete_multipart_upload("k", &id, &[full, last]).await.unwrap();
    }

    #[tokio::test]
    async fn unfinished_uploads_list_by_key_then_id_with_prefix_and_paging() {
        let store = MemoryStore::default();
        let mut ids = Vec::new();
        for key in ["b", "a/x", "b", "a/y", "c"] {
            ids.push((key, store.create_multipart_upload(key, &PutOptions::default()).await.unwrap()));
        }
        ids.sort();
        let all = store.list_multipart_uploads("", None, 1000).await.unwrap();
        let listed: Vec<(&str, String)> = all.uploads.iter().map(|u| (u.key.as_str(), u.upload_id.clone())).collect();
        assert_eq!(listed, ids);
        assert_eq!(all.next, None);
        assert_eq!(all.uploads, store.unfinished_uploads());
        assert!(all.uploads.iter().all(|u| u.initiated.is_some()));

        let under_a = store.list_multipart_uploads("a/", None, 1000).await.unwrap();
        assert_eq!(under_a.uploads.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), ["a/x", "a/y"]);

        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_multipart_uploads("", after, 2).await.unwrap();
            assert!(page.uploads.len() <= 2);
            paged.extend(page.uploads.into_iter().map(|u| u.upload_id));
            match page.next {
                Some(marker) => after = Some(marker),
                None => break,
            }
        }
        assert_eq!(paged, ids.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn requests_are_counted_per_operation_failed_ones_included() {
        let store = MemoryStore::default();
        store.head_bucket().await.unwrap();
        put(&store, "k", b"data").await;
        store.head_object("k").await.unwrap();
        store.head_object("missing").await.unwrap_err();
        store.get_range("k", 0..4).await.unwrap();
        assert_eq!(store.requests("HeadBucket"), 1);
        assert_eq!(store.requests("PutObject"), 1);
        assert_eq!(store.requests("HeadObject"), 2);
        assert_eq!(store.requests("GetObject"), 1);
        assert_eq!(store.requests("ListObjects"), 0);
        store.reset_requests();
        assert_eq!(store.requests("HeadObject"), 0);
    }

    #[tokio::test]
    async fn clones_share_their_contents() {
        let store = MemoryStore::with_min_part_size(MIN_PART);
        let clone = store.clone();
        put(&clone, "k", b"shared").await;
        assert_eq!(store.get_range("k", 0..6).await.unwrap(), "shared");
        assert_eq!(store.requests("PutObject"), 1);
        let id = clone.create_multipart_upload("m", &PutOptions::default()).await.unwrap();
        let p = clone.upload_part("m", &id, 1, part_data(0, 1)).await.unwrap();
        let p2 = clone.upload_part("m", &id, 2, part_data(0, 1)).await.unwrap();
        // The clone keeps the minimum part size too.
        let e = store.complete_multipart_upload("m", &id, &[p, p2]).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("EntityTooSmall"));
    }
}
