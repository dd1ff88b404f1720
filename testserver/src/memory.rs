//! An in-memory S3 store with S3's flat namespace.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::RwLock;
use s3s::crypto::{Checksum, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

const MAX_KEYS: i32 = 1000;
const MIN_PART_SIZE: usize = 5 << 20;

/// Keys are opaque strings as in S3: `a` and `a/b` coexist, `dir/` is an ordinary (often
/// empty) object, and `a//b` or `x/./y` are stored as given. This is the namespace real
/// buckets have and s3s-fs cannot represent, so clients' mapping of keys to files can be
/// tested against it. Clones share the contents, so a test can reach the store its server
/// serves.
#[derive(Default, Clone)]
pub struct MemoryStore {
    buckets: Arc<RwLock<BTreeMap<String, Bucket>>>,
    uploads_started: Arc<AtomicU64>,
}

struct Bucket {
    created: SystemTime,
    objects: BTreeMap<String, Stored>,
    uploads: BTreeMap<String, Upload>,
}

#[derive(Clone)]
struct Stored {
    data: Bytes,
    /// Unquoted: hex MD5, or `hex-N` for a multipart upload of N parts.
    etag: String,
    last_modified: SystemTime,
    content_type: Option<String>,
    metadata: Option<Metadata>,
    storage_class: String,
    tags: Vec<Tag>,
}

struct Upload {
    key: String,
    initiated: SystemTime,
    content_type: Option<String>,
    metadata: Option<Metadata>,
    storage_class: String,
    parts: BTreeMap<i32, UploadedPart>,
}

#[derive(Clone)]
struct UploadedPart {
    data: Bytes,
    md5: [u8; 16],
    last_modified: SystemTime,
}

impl MemoryStore {
    /// Moves the start of the unfinished uploads of keys under `prefix` back by `age`, so
    /// that tests of stale-upload cleanup need not wait; returns how many were moved.
    pub fn backdate_uploads(&self, bucket: &str, prefix: &str, age: Duration) -> usize {
        let mut buckets = self.buckets.write();
        let Some(b) = buckets.get_mut(bucket) else { return 0 };
        let mut moved = 0;
        for u in b.uploads.values_mut().filter(|u| u.key.starts_with(prefix)) {
            u.initiated = u.initiated.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
            moved += 1;
        }
        moved
    }

    /// Runs `f` on the bucket under the read lock (never held across an await).
    fn read<T>(&self, bucket: &str, f: impl FnOnce(&Bucket) -> S3Result<T>) -> S3Result<T> {
        f(self.buckets.read().get(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?)
    }

    fn write<T>(&self, bucket: &str, f: impl FnOnce(&mut Bucket) -> S3Result<T>) -> S3Result<T> {
        f(self.buckets.write().get_mut(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?)
    }

    fn object(&self, bucket: &str, key: &str) -> S3Result<Stored> {
        self.read(bucket, |b| b.objects.get(key).cloned().ok_or_else(|| s3_error!(NoSuchKey)))
    }

    fn source_object(
        &self,
        source: &CopySource,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<Stored> {
        let CopySource::Bucket { bucket, key, .. } = source else {
            return Err(s3_error!(NotImplemented, "only bucket/key copy sources"));
        };
        let src = self.object(bucket, key)?;
        if if_match.is_some_and(|c| !etag_matches(c, &src.etag))
            || if_none_match.is_some_and(|c| etag_matches(c, &src.etag))
        {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(src)
    }
}

impl Bucket {
    fn upload(&self, upload_id: &str, key: &str) -> S3Result<&Upload> {
        self.uploads.get(upload_id).filter(|u| u.key == key).ok_or_else(|| s3_error!(NoSuchUpload))
    }

    fn upload_mut(&mut self, upload_id: &str, key: &str) -> S3Result<&mut Upload> {
        self.uploads.get_mut(upload_id).filter(|u| u.key == key).ok_or_else(|| s3_error!(NoSuchUpload))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

fn storage_class(requested: Option<StorageClass>) -> String {
    requested.map_or_else(|| StorageClass::STANDARD.to_owned(), |s| s.as_str().to_owned())
}

/// Reads a request body completely; S3 semantics need the whole object before storing it.
async fn read_body(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let Some(mut body) = body else { return Ok(Bytes::new()) };
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| S3Error::with_source(S3ErrorCode::IncompleteBody, e))?);
    }
    Ok(buf.freeze())
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

enum Entry<'a> {
    Object(&'a str, &'a Stored),
    Prefix(String),
}

struct Page<'a> {
    entries: Vec<Entry<'a>>,
    truncated: bool,
}

impl Entry<'_> {
    fn name(&self) -> &str {
        match self {
            Entry::Object(key, _) => key,
            Entry::Prefix(p) => p,
        }
    }
}

impl Page<'_> {
    /// Where the next page starts when truncated: S3's NextMarker / continuation point.
    fn next_marker(&self) -> Option<String> {
        self.truncated.then(|| self.entries.last().map(|e| e.name().to_owned())).flatten()
    }

    fn into_parts(self) -> (Vec<Object>, Vec<CommonPrefix>) {
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        for entry in self.entries {
            match entry {
                Entry::Object(key, obj) => contents.push(Object {
                    key: Some(key.to_owned()),
                    e_tag: Some(ETag::Strong(obj.etag.clone())),
                    size: Some(obj.data.len() as i64),
                    last_modified: Some(obj.last_modified.into()),
                    storage_class: Some(ObjectStorageClass::from(obj.storage_class.clone())),
                    ..Default::default()
                }),
                Entry::Prefix(p) => prefixes.push(CommonPrefix { prefix: Some(p) }),
            }
        }
        (contents, prefixes)
    }
}

/// One page of a listing: keys under `prefix` after `after`, keys containing `delimiter`
/// past the prefix rolled up into common prefixes, each counting once towards `max`.
fn list_page<'a>(
    objects: &'a BTreeMap<String, Stored>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page<'a> {
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut entries: Vec<Entry<'a>> = Vec::new();
    let mut last_common: Option<&str> = None;
    for (key, obj) in objects.range::<str, _>((start, Bound::Unbounded)) {
        // Keys with the prefix are contiguous from `start` on.
        let Some(rest) = key.strip_prefix(prefix) else { break };
        let entry = match delimiter.and_then(|d| rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])) {
            Some(common) if last_common == Some(common) || after.is_some_and(|a| common <= a) => continue,
            Some(common) => {
                last_common = Some(common);
                Entry::Prefix(common.to_owned())
            }
            None => Entry::Object(key, obj),
        };
        if entries.len() == max {
            return Page { entries, truncated: true };
        }
        entries.push(entry);
    }
    Page { entries, truncated: false }
}

/// `bytes=FIRST-LAST` (both required, as S3 demands for UploadPartCopy) within `len`.
fn copy_range(range: Option<&str>, len: usize) -> S3Result<std::ops::Range<usize>> {
    let Some(range) = range else { return Ok(0..len) };
    let parse = || -> Option<(usize, usize)> {
        let (first, last) = range.strip_prefix("bytes=")?.split_once('-')?;
        Some((first.parse().ok()?, last.parse().ok()?))
    };
    let (first, last) = parse().ok_or_else(|| s3_error!(InvalidArgument, "bad x-amz-copy-source-range"))?;
    if first > last || last >= len {
        return Err(s3_error!(InvalidRange));
    }
    Ok(first..last + 1)
}

#[async_trait::async_trait]
impl S3 for MemoryStore {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let mut buckets = self.buckets.write();
        if buckets.contains_key(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        let bucket = Bucket { created: SystemTime::now(), objects: BTreeMap::new(), uploads: BTreeMap::new() };
        buckets.insert(req.input.bucket, bucket);
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let mut buckets = self.buckets.write();
        let bucket = buckets.get(&req.input.bucket).ok_or_else(|| s3_error!(NoSuchBucket))?;
        if !bucket.objects.is_empty() || !bucket.uploads.is_empty() {
            return Err(s3_error!(BucketNotEmpty));
        }
        buckets.remove(&req.input.bucket);
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.read(&req.input.bucket, |_| Ok(S3Response::new(HeadBucketOutput::default())))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.read(&req.input.bucket, |_| Ok(S3Response::new(GetBucketLocationOutput::default())))
    }

    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .buckets
            .read()
            .iter()
            .map(|(name, b)| s3s::dto::Bucket {
                name: Some(name.clone()),
                creation_date: Some(b.created.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let (truncated, next, contents, prefixes) = self.read(&input.bucket, |b| {
            let page = list_page(&b.objects, prefix, input.delimiter.as_deref(), input.marker.as_deref(), max);
            let (truncated, next) = (page.truncated, page.next_marker());
            let (contents, prefixes) = page.into_parts();
            Ok((truncated, next, contents, prefixes))
        })?;
        Ok(S3Response::new(ListObjectsOutput {
            is_truncated: Some(truncated),
            // As S3 does: clients without a delimiter continue from the last key instead.
            next_marker: next.filter(|_| input.delimiter.is_some()),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            max_keys: Some(max as i32),
            name: Some(input.bucket),
            prefix: input.prefix,
            marker: input.marker,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let after = input.continuation_token.as_deref().or(input.start_after.as_deref());
        let (truncated, next, contents, prefixes) = self.read(&input.bucket, |b| {
            let page = list_page(&b.objects, prefix, input.delimiter.as_deref(), after, max);
            let (truncated, next) = (page.truncated, page.next_marker());
            let (contents, prefixes) = page.into_parts();
            Ok((truncated, next, contents, prefixes))
        })?;
        Ok(S3Response::new(ListObjectsV2Output {
            is_truncated: Some(truncated),
            next_continuation_token: next,
            key_count: Some((contents.len() + prefixes.len()) as i32),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            max_keys: Some(max as i32),
            name: Some(input.bucket),
            prefix: input.prefix,
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let obj = self.object(&input.bucket, &input.key)?;
        check_read_conditions(&obj, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(obj.data.len() as i64),
            e_tag: Some(ETag::Strong(obj.etag)),
            last_modified: Some(obj.last_modified.into()),
            content_type: obj.content_type,
            metadata: obj.metadata,
            storage_class: (obj.storage_class != StorageClass::STANDARD).then(|| StorageClass::from(obj.storage_class)),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let obj = self.object(&input.bucket, &input.key)?;
        check_read_conditions(&obj, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let len = obj.data.len() as u64;
        // A range on an empty object is ignored (200 with the empty body), as S3 does.
        let (body, content_range) = match input.range {
            Some(range) if len > 0 => {
                let r = range.check(len)?;
                (
                    obj.data.slice(r.start as usize..r.end as usize),
                    Some(format!("bytes {}-{}/{len}", r.start, r.end - 1)),
                )
            }
            _ => (obj.data, None),
        };
        Ok(S3Response::new(GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(body.len() as i64),
            content_range,
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            e_tag: Some(ETag::Strong(obj.etag)),
            last_modified: Some(obj.last_modified.into()),
            content_type: obj.content_type,
            metadata: obj.metadata,
            storage_class: (obj.storage_class != StorageClass::STANDARD).then(|| StorageClass::from(obj.storage_class)),
            tag_count: (!obj.tags.is_empty()).then_some(obj.tags.len() as i32),
            ..Default::default()
        }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.read(&input.bucket, |_| Ok(()))?;
        let data = read_body(input.body).await?;
        let etag = hex(&Md5::checksum(&data));
        let size = data.len() as i64;
        let obj = Stored {
            data,
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            content_type: input.content_type,
            metadata: input.metadata,
            storage_class: storage_class(input.storage_class),
            tags: Vec::new(),
        };
        self.write(&input.bucket, |b| {
            let existing = b.objects.get(&input.key);
            if input.if_none_match.as_ref().is_some_and(ETagCondition::is_any) && existing.is_some() {
                return Err(s3_error!(PreconditionFailed, "object exists"));
            }
            if let Some(condition) = &input.if_match {
                let existing = existing.ok_or_else(|| s3_error!(NoSuchKey))?;
                if !etag_matches(condition, &existing.etag) {
                    return Err(s3_error!(PreconditionFailed, "ETag does not match"));
                }
            }
            b.objects.insert(input.key, obj);
            Ok(())
        })?;
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(ETag::Strong(etag)), size: Some(size), ..Default::default() }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.write(&req.input.bucket, |b| {
            b.objects.remove(&req.input.key);
            Ok(S3Response::new(DeleteObjectOutput::default()))
        })
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let deleted = self.write(&input.bucket, |b| {
            Ok(input
                .delete
                .objects
                .into_iter()
                .map(|o| {
                    b.objects.remove(&o.key);
                    DeletedObject { key: Some(o.key), ..Default::default() }
                })
                .collect())
        })?;
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput { deleted: (!quiet).then_some(deleted), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let src = self.source_object(
            &input.copy_source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
        )?;
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let to_itself = matches!(&input.copy_source, CopySource::Bucket { bucket, key, .. } if **bucket == *input.bucket && **key == *input.key);
        if to_itself && !replace && input.storage_class.is_none() {
            return Err(s3_error!(InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."));
        }
        // A copy is a single-part object, so a multipart source gets a plain MD5 ETag.
        let etag = if src.etag.contains('-') { hex(&Md5::checksum(&src.data)) } else { src.etag.clone() };
        let now = SystemTime::now();
        let (content_type, metadata) =
            if replace { (input.content_type, input.metadata) } else { (src.content_type, src.metadata) };
        let obj = Stored {
            data: src.data,
            etag: etag.clone(),
            last_modified: now,
            content_type,
            metadata,
            storage_class: storage_class(input.storage_class),
            tags: src.tags,
        };
        self.write(&input.bucket, |b| {
            b.objects.insert(input.key, obj);
            Ok(())
        })?;
        let result =
            CopyObjectResult { e_tag: Some(ETag::Strong(etag)), last_modified: Some(now.into()), ..Default::default() };
        Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let obj = self.object(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(GetObjectTaggingOutput { tag_set: obj.tags, version_id: None }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        self.write(&input.bucket, |b| {
            b.objects.get_mut(&input.key).ok_or_else(|| s3_error!(NoSuchKey))?.tags = input.tagging.tag_set;
            Ok(S3Response::new(PutObjectTaggingOutput::default()))
        })
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let upload_id = format!("mem-upload-{:08}", self.uploads_started.fetch_add(1, Ordering::Relaxed) + 1);
        let upload = Upload {
            key: input.key.clone(),
            initiated: SystemTime::now(),
            content_type: input.content_type,
            metadata: input.metadata,
            storage_class: storage_class(input.storage_class),
            parts: BTreeMap::new(),
        };
        self.write(&input.bucket, |b| {
            b.uploads.insert(upload_id.clone(), upload);
            Ok(())
        })?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        check_part_number(input.part_number)?;
        self.read(&input.bucket, |b| b.upload(&input.upload_id, &input.key).map(drop))?;
        let data = read_body(input.body).await?;
        let md5 = Md5::checksum(&data);
        self.write(&input.bucket, |b| {
            let part = UploadedPart { data, md5, last_modified: SystemTime::now() };
            b.upload_mut(&input.upload_id, &input.key)?.parts.insert(input.part_number, part);
            Ok(())
        })?;
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(hex(&md5))), ..Default::default() }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        check_part_number(input.part_number)?;
        let src = self.source_object(
            &input.copy_source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
        )?;
        let data = src.data.slice(copy_range(input.copy_source_range.as_deref(), src.data.len())?);
        let md5 = Md5::checksum(&data);
        let now = SystemTime::now();
        self.write(&input.bucket, |b| {
            let part = UploadedPart { data, md5, last_modified: now };
            b.upload_mut(&input.upload_id, &input.key)?.parts.insert(input.part_number, part);
            Ok(())
        })?;
        let result = CopyPartResult {
            e_tag: Some(ETag::Strong(hex(&md5))),
            last_modified: Some(now.into()),
            ..Default::default()
        };
        Ok(S3Response::new(UploadPartCopyOutput { copy_part_result: Some(result), ..Default::default() }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let requested = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts"));
        }
        let (parts, content_type, metadata, storage_class) = self.read(&input.bucket, |b| {
            let upload = b.upload(&input.upload_id, &input.key)?;
            let mut parts = Vec::with_capacity(requested.len());
            let mut previous = 0;
            for p in &requested {
                let number = p.part_number.ok_or_else(|| s3_error!(InvalidPart, "part without a number"))?;
                if number <= previous {
                    return Err(s3_error!(InvalidPartOrder));
                }
                previous = number;
                let part = upload
                    .parts
                    .get(&number)
                    .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
                let etag = p.e_tag.as_ref().map(|e| e.value().trim_matches('"'));
                if etag != Some(hex(&part.md5).as_str()) {
                    return Err(s3_error!(InvalidPart, "ETag of part {number} does not match"));
                }
                parts.push(part.clone());
            }
            Ok((parts, upload.content_type.clone(), upload.metadata.clone(), upload.storage_class.clone()))
        })?;
        if parts[..parts.len() - 1].iter().any(|p| p.data.len() < MIN_PART_SIZE) {
            return Err(s3_error!(EntityTooSmall));
        }
        let mut data = BytesMut::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        for p in &parts {
            data.extend_from_slice(&p.data);
            md5s.extend_from_slice(&p.md5);
        }
        let etag = format!("{}-{}", hex(&Md5::checksum(&md5s)), parts.len());
        let obj = Stored {
            data: data.freeze(),
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            content_type,
            metadata,
            storage_class,
            tags: Vec::new(),
        };
        self.write(&input.bucket, |b| {
            b.upload(&input.upload_id, &input.key)?;
            b.uploads.remove(&input.upload_id);
            b.objects.insert(input.key.clone(), obj);
            Ok(())
        })?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.write(&input.bucket, |b| {
            b.upload(&input.upload_id, &input.key)?;
            b.uploads.remove(&input.upload_id);
            Ok(S3Response::new(AbortMultipartUploadOutput::default()))
        })
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_uploads)?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let (key_marker, id_marker) = (input.key_marker.as_deref(), input.upload_id_marker.as_deref());
        let (uploads, truncated) = self.read(&input.bucket, |b| {
            let mut uploads: Vec<(&str, &str, &Upload)> = b
                .uploads
                .iter()
                .filter(|(id, u)| {
                    u.key.starts_with(prefix)
                        && match (key_marker, id_marker) {
                            (Some(km), Some(im)) => (u.key.as_str(), id.as_str()) > (km, im),
                            (Some(km), None) => u.key.as_str() > km,
                            (None, _) => true,
                        }
                })
                .map(|(id, u)| (u.key.as_str(), id.as_str(), u))
                .collect();
            uploads.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let truncated = uploads.len() > max;
            let uploads: Vec<MultipartUpload> = uploads
                .into_iter()
                .take(max)
                .map(|(key, id, u)| MultipartUpload {
                    key: Some(key.to_owned()),
                    upload_id: Some(id.to_owned()),
                    initiated: Some(u.initiated.into()),
                    storage_class: Some(StorageClass::from(u.storage_class.clone())),
                    ..Default::default()
                })
                .collect();
            Ok((uploads, truncated))
        })?;
        let last = uploads.last().filter(|_| truncated);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            next_key_marker: last.and_then(|u| u.key.clone()),
            next_upload_id_marker: last.and_then(|u| u.upload_id.clone()),
            is_truncated: Some(truncated),
            max_uploads: Some(max as i32),
            uploads: Some(uploads),
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            ..Default::default()
        }))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_parts)?;
        let after = input.part_number_marker.unwrap_or(0);
        let (parts, truncated) = self.read(&input.bucket, |b| {
            let upload = b.upload(&input.upload_id, &input.key)?;
            let mut parts = upload.parts.range(after + 1..).map(|(n, p)| Part {
                part_number: Some(*n),
                e_tag: Some(ETag::Strong(hex(&p.md5))),
                size: Some(p.data.len() as i64),
                last_modified: Some(p.last_modified.into()),
                ..Default::default()
            });
            let page: Vec<Part> = parts.by_ref().take(max).collect();
            Ok((page, parts.next().is_some()))
        })?;
        Ok(S3Response::new(ListPartsOutput {
            next_part_number_marker: parts.last().and_then(|p| p.part_number).filter(|_| truncated),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            parts: Some(parts),
            part_number_marker: input.part_number_marker,
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            ..Default::default()
        }))
    }
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=10_000).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"))
    }
}

fn check_read_conditions(
    obj: &Stored,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if if_match.is_some_and(|c| !etag_matches(c, &obj.etag)) {
        return Err(s3_error!(PreconditionFailed));
    }
    if if_none_match.is_some_and(|c| etag_matches(c, &obj.etag)) {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}
