//! The object-store layer: typed calls over aws-sdk-s3 for one bucket. It knows HTTP,
//! signing and retries (the SDK's standard retry with backoff), and nothing of inodes.

mod error;

use std::collections::HashMap;
use std::ops::Range;
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::DateTime;
use aws_types::request_id::RequestId;
use bytes::Bytes;
use tracing::debug;

pub use error::ObjectError;

use crate::config::{ListVersion, S3Config};

/// One entry of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    pub etag: Option<String>,
}

/// One page of a delimited listing; `next` continues it (a v1 marker or a v2 token).
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
    pub metadata: HashMap<String, String>,
}

/// What every upload carries besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// User metadata, without the `x-amz-meta-` prefix.
    pub metadata: HashMap<String, String>,
    /// A canned ACL (`private`, `public-read`, ...); `None` leaves the bucket's default.
    pub acl: Option<String>,
    pub storage_class: Option<String>,
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
#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub number: i32,
    pub etag: String,
}

pub struct ObjectClient {
    client: aws_sdk_s3::Client,
    bucket: String,
    list_version: ListVersion,
}

impl ObjectClient {
    pub fn new(cfg: &S3Config, credentials: SharedCredentialsProvider) -> ObjectClient {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .endpoint_url(&cfg.endpoint)
            .force_path_style(cfg.path_style)
            .credentials_provider(credentials)
            // S3-compatible stores reject the SDK's default CRC32 trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(cfg.connect_timeout).read_timeout(cfg.read_timeout).build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build();
        ObjectClient {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: cfg.bucket.clone(),
            list_version: cfg.list_version,
        }
    }

    pub async fn head_bucket(&self) -> Result<(), ObjectError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            // HeadBucket has no body, so a 404 carries no NoSuchBucket code.
            Err(e) => Err(match ObjectError::from(e) {
                ObjectError::NotFound => ObjectError::NoSuchBucket,
                other => other,
            }),
        }
    }

    /// One page of keys under `prefix`, grouped at `/`.
    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.list_any(prefix, Some("/"), continuation, max_keys).await
    }

    /// Every key under `prefix`, at any depth, paging as needed.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectSummary>, ObjectError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self.list_any(prefix, None, next, 1000).await?;
            all.extend(page.objects);
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(all),
            }
        }
    }

    async fn list_any(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        match self.list_version {
            ListVersion::V1 => self.list_page_v1(prefix, delimiter, continuation, max_keys).await,
            ListVersion::V2 => self.list_page_v2(prefix, delimiter, continuation, max_keys).await,
        }
    }

    async fn list_page_v1(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        let out = self
            .client
            .list_objects()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(max_keys)
            .set_marker(marker)
            .send()
            .await?;
        debug!(op = "ListObjects", prefix, request_id = out.request_id(), "listed");
        let (objects, common_prefixes) = page_entries(out.contents(), out.common_prefixes());
        let next = if out.is_truncated().unwrap_or(false) {
            // NextMarker is only sent with a delimiter and not by every store; the greatest
            // key or prefix of the page is where the next page starts either way.
            let last = objects.iter().map(|o| o.key.as_str()).chain(common_prefixes.iter().map(String::as_str)).max();
            out.next_marker().or(last).map(str::to_string)
        } else {
            None
        };
        if out.is_truncated().unwrap_or(false) && next.is_none() {
            return Err(ObjectError::Protocol("a truncated listing came without a way to continue it".into()));
        }
        Ok(ListPage { objects, common_prefixes, next })
    }

    async fn list_page_v2(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(max_keys)
            .set_continuation_token(token)
            .send()
            .await?;
        debug!(op = "ListObjectsV2", prefix, request_id = out.request_id(), "listed");
        let next = match (out.is_truncated().unwrap_or(false), out.next_continuation_token()) {
            (true, Some(t)) => Some(t.to_string()),
            (true, None) => {
                return Err(ObjectError::Protocol("a truncated listing came without a continuation token".into()))
            }
            (false, _) => None,
        };
        let (objects, common_prefixes) = page_entries(out.contents(), out.common_prefixes());
        Ok(ListPage { objects, common_prefixes, next })
    }

    pub async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let out = self.client.head_object().bucket(&self.bucket).key(key).send().await?;
        debug!(op = "HeadObject", key, request_id = out.request_id(), "head");
        Ok(ObjectInfo {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            content_type: out.content_type().map(str::to_string),
            last_modified: out.last_modified().and_then(to_system_time),
            etag: out.e_tag().map(str::to_string),
            storage_class: out.storage_class().map(|c| c.as_str().to_string()),
            metadata: out.metadata().cloned().unwrap_or_default(),
        })
    }

    /// The bytes of `range` (which must be non-empty and within the object).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        self.get_range_if(key, range, None).await
    }

    /// Like `get_range`, but only from the object version with this ETag (else
    /// `PreconditionFailed`), so bytes of two versions are never mixed.
    pub async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes, ObjectError> {
        let mut body = self.get_stream(key, range, etag).await?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Starts a GET of `range` (from the version with this ETag, when given) and returns
    /// its body as it arrives, so a reader can use the first bytes before the last.
    pub async fn get_stream(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> Result<ObjectBody, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(etag.map(str::to_string))
            .send()
            .await?;
        let len = range.end - range.start;
        debug!(op = "GetObject", key, start = range.start, len, request_id = out.request_id(), "get");
        Ok(ObjectBody { key: key.to_string(), body: out.body })
    }
}

/// The body of a GET being received.
pub struct ObjectBody {
    key: String,
    body: aws_sdk_s3::primitives::ByteStream,
}

impl ObjectBody {
    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ObjectError> {
        match self.body.next().await {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(ObjectError::Protocol(format!("reading the body of {}: {e}", self.key))),
        }
    }
}

impl ObjectClient {
    /// Stores `body` as `key` in one request; returns the new ETag.
    pub async fn put_object(&self, key: &str, body: Bytes, opts: &PutOptions) -> Result<Option<String>, ObjectError> {
        let len = body.len();
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .set_content_type(opts.content_type.clone())
            .set_metadata(Some(opts.metadata.clone()))
            .set_acl(opts.acl.as_deref().map(Into::into))
            .set_storage_class(opts.storage_class.as_deref().map(Into::into))
            .send()
            .await?;
        debug!(op = "PutObject", key, len, request_id = out.request_id(), "put");
        Ok(out.e_tag().map(str::to_string))
    }

    /// Server-side copy of `source` (only at ETag `etag`, when given) to `key`, with the
    /// metadata replaced by `opts`, or kept when `opts` is `None`. Objects over 5 GiB need
    /// a multipart copy instead.
    pub async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        use aws_sdk_s3::types::MetadataDirective;
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source(&self.bucket, source))
            .set_copy_source_if_match(etag.map(str::to_string));
        req = match opts {
            Some(opts) => req
                .metadata_directive(MetadataDirective::Replace)
                .set_content_type(opts.content_type.clone())
                .set_metadata(Some(opts.metadata.clone()))
                .set_acl(opts.acl.as_deref().map(Into::into))
                .set_storage_class(opts.storage_class.as_deref().map(Into::into)),
            None => req.metadata_directive(MetadataDirective::Copy),
        };
        let out = req.send().await?;
        debug!(op = "CopyObject", source, key, request_id = out.request_id(), "copied");
        Ok(out.copy_object_result().and_then(|r| r.e_tag()).map(str::to_string))
    }

    /// Deletes `key`; a key that does not exist is not an error (as S3 answers 204).
    pub async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                debug!(op = "DeleteObject", key, request_id = out.request_id(), "deleted");
                Ok(())
            }
            Err(e) => match ObjectError::from(e) {
                ObjectError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Deletes up to 1000 keys in one request; returns the keys that could not be
    /// deleted, with the reason.
    pub async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ObjectError::Protocol(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| ObjectError::Protocol(e.to_string()))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .customize()
            // XOS, like S3 before checksums, requires Content-MD5 on DeleteObjects.
            .mutate_request(|req| {
                use md5::Digest;
                let digest = md5::Md5::digest(req.body().bytes().unwrap_or_default());
                req.headers_mut().insert("Content-MD5", aws_smithy_types::base64::encode(digest.as_slice()));
            })
            .send()
            .await?;
        debug!(op = "DeleteObjects", count = keys.len(), request_id = out.request_id(), "deleted");
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (e.key().unwrap_or_default().to_string(), e.message().or(e.code()).unwrap_or_default().to_string())
            })
            .collect())
    }

    pub async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_metadata(Some(opts.metadata.clone()))
            .set_acl(opts.acl.as_deref().map(Into::into))
            .set_storage_class(opts.storage_class.as_deref().map(Into::into))
            .send()
            .await?;
        debug!(op = "CreateMultipartUpload", key, request_id = out.request_id(), "created");
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| ObjectError::Protocol("CreateMultipartUpload returned no upload id".into()))
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let len = body.len();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(body.into())
            .send()
            .await?;
        debug!(op = "UploadPart", key, number, len, request_id = out.request_id(), "uploaded");
        let etag = out
            .e_tag()
            .ok_or_else(|| ObjectError::Protocol(format!("part {number} of {key} came back without an ETag")))?;
        Ok(CompletedPart { number, etag: etag.to_string() })
    }

    /// Copies `range` of the object `source_key` (only while its ETag is `source_etag`)
    /// into part `number`, on the server.
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source_key: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> Result<CompletedPart, ObjectError> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(&self.bucket, source_key))
            .copy_source_if_match(source_etag)
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await?;
        debug!(op = "UploadPartCopy", key, number, request_id = out.request_id(), "copied");
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .ok_or_else(|| ObjectError::Protocol(format!("copied part {number} of {key} came back without an ETag")))?;
        Ok(CompletedPart { number, etag: etag.to_string() })
    }

    /// Makes the upload the object; returns its ETag.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<Option<String>, ObjectError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkPart};
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts.iter().map(|p| SdkPart::builder().part_number(p.number).e_tag(&p.etag).build()).collect(),
            ))
            .build();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(upload)
            .send()
            .await?;
        debug!(op = "CompleteMultipartUpload", key, parts = parts.len(), request_id = out.request_id(), "completed");
        Ok(out.e_tag().map(str::to_string))
    }

    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        let out =
            self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await?;
        debug!(op = "AbortMultipartUpload", key, request_id = out.request_id(), "aborted");
        Ok(())
    }

    /// One page of the unfinished multipart uploads of keys under `prefix`, in key and
    /// upload id order, starting after `after`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        let (key_marker, upload_id_marker) = after.map(|m| (m.key, m.upload_id)).unzip();
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_uploads(max_uploads)
            .set_key_marker(key_marker)
            .set_upload_id_marker(upload_id_marker)
            .send()
            .await?;
        debug!(op = "ListMultipartUploads", prefix, request_id = out.request_id(), "listed");
        let uploads: Vec<UnfinishedUpload> = out
            .uploads()
            .iter()
            .filter_map(|u| {
                Some(UnfinishedUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                    initiated: u.initiated().and_then(to_system_time),
                })
            })
            .collect();
        let next = if out.is_truncated().unwrap_or(false) {
            // Not every store sends the Next markers; the page's last upload is where the
            // next page starts either way.
            let sent = out.next_key_marker().zip(out.next_upload_id_marker());
            let last = uploads.last().map(|u| (u.key.as_str(), u.upload_id.as_str()));
            let (key, upload_id) = sent.or(last).ok_or_else(|| {
                ObjectError::Protocol("a truncated upload listing came without a way to continue it".into())
            })?;
            Some(UploadMarker { key: key.to_string(), upload_id: upload_id.to_string() })
        } else {
            None
        };
        Ok(UploadPage { uploads, next })
    }
}

/// `bucket/key` with the key URL-encoded, as x-amz-copy-source wants it.
fn copy_source(bucket: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{bucket}/{encoded}")
}

/// The objects and common prefixes of a listing page (v1 and v2 share these types).
fn page_entries(
    contents: &[aws_sdk_s3::types::Object],
    prefixes: &[aws_sdk_s3::types::CommonPrefix],
) -> (Vec<ObjectSummary>, Vec<String>) {
    let objects = contents
        .iter()
        .filter_map(|o| {
            Some(ObjectSummary {
                key: o.key()?.to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                last_modified: o.last_modified().and_then(to_system_time),
                etag: o.e_tag().map(str::to_string),
            })
        })
        .collect();
    let prefixes = prefixes.iter().filter_map(|p| p.prefix().map(str::to_string)).collect();
    (objects, prefixes)
}

fn to_system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}
