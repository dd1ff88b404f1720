//! The real object store: [`ObjectStore`] over aws-sdk-s3 for one bucket. It knows HTTP
//! and signing, and nothing of inodes. Each request is sent once; retries are
//! [`crate::store::RetryingStore`]'s, so they can be tested against any store.

mod account;
mod deviations;
mod error;
mod settings;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::primitives::DateTime;
use aws_types::request_id::RequestId;
use bytes::Bytes;
use tracing::{debug, warn};

use error::{malformed, sdk_error};

use crate::config::{ListVersion, S3Config};
use crate::store::settings as store_settings;
use crate::store::{
    BucketSetting, CompletedPart, ErrorKind, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, ObjectSummary,
    ObjectVersion, Precondition, PutOptions, Tags, UnfinishedUpload, UploadMarker, UploadPage, VersionMarker,
    VersionPage,
};

pub use account::S3Buckets;

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    list_version: ListVersion,
    /// The store answered a conditional write with 501: conditions are then checked with
    /// a HEAD right before each write instead. Learnt once for all of an account's buckets.
    no_conditional_writes: Arc<AtomicBool>,
    /// Bodies are signed (SHA-256 of every byte, a quarter of a streamed write's CPU)
    /// only over plain HTTP: over HTTPS, TLS already guards them.
    sign_bodies: bool,
}

/// Whether request bodies to `endpoint` need a signature of their own: not over HTTPS.
fn signs_bodies(endpoint: &str) -> bool {
    !endpoint.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The `If-Match` and `If-None-Match` headers of a condition.
fn condition_headers(condition: &Precondition) -> (Option<String>, Option<String>) {
    match condition {
        Precondition::None => (None, None),
        Precondition::Absent => (None, Some("*".into())),
        Precondition::Matches(etag) => (Some(etag.clone()), None),
    }
}

impl S3Store {
    pub fn new(cfg: &S3Config, credentials: SharedCredentialsProvider) -> S3Store {
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
            .retry_config(RetryConfig::disabled())
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: cfg.bucket.clone(),
            list_version: cfg.list_version,
            no_conditional_writes: Arc::new(AtomicBool::new(false)),
            sign_bodies: signs_bodies(&cfg.endpoint),
        }
    }

    /// The same connection to another bucket.
    fn for_bucket(&self, bucket: &str) -> S3Store {
        S3Store {
            client: self.client.clone(),
            bucket: bucket.to_string(),
            list_version: self.list_version,
            no_conditional_writes: self.no_conditional_writes.clone(),
            sign_bodies: self.sign_bodies,
        }
    }

    /// Sends a write with its condition as headers, or, for a store without conditional
    /// writes, checks the condition with a HEAD and sends the write without headers.
    async fn conditional<F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        condition: &Precondition,
        send: F,
    ) -> Result<Option<String>, ObjectError>
    where
        F: Fn(Option<String>, Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, ObjectError>>,
    {
        if *condition == Precondition::None {
            return send(None, None).await;
        }
        if !self.no_conditional_writes.load(Ordering::Relaxed) {
            let (if_match, if_none_match) = condition_headers(condition);
            match send(if_match, if_none_match).await {
                Err(e) if e.status == Some(501) || e.code.as_deref() == Some("NotImplemented") => {
                    warn!(op, "the store does not take conditional writes ({e}): each write is checked with a HEAD just before it instead");
                    self.no_conditional_writes.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        let current = match self.head_object(key).await {
            Ok(info) => info.etag,
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let refused =
            |kind| ObjectError::new(kind, op, key).with_message("the object is not the version the write expected");
        match (condition, current) {
            (Precondition::Absent, Some(_)) => Err(refused(ErrorKind::PreconditionFailed)),
            (Precondition::Matches(_), None) => Err(refused(ErrorKind::NotFound)),
            (Precondition::Matches(want), Some(have)) if want.trim_matches('"') != have.trim_matches('"') => {
                Err(refused(ErrorKind::PreconditionFailed))
            }
            _ => send(None, None).await,
        }
    }

    /// A ranged GET, with `condition` (an ETag or a version) added to the request; the
    /// body arrives as it is received.
    async fn get(
        &self,
        key: &str,
        range: Range<u64>,
        condition: impl FnOnce(GetObjectFluentBuilder) -> GetObjectFluentBuilder,
    ) -> Result<ObjectBody, ObjectError> {
        const OP: &str = "GetObject";
        let req = self.client.get_object().bucket(&self.bucket).key(key).range(format!(
            "bytes={}-{}",
            range.start,
            range.end - 1
        ));
        let out = condition(req).send().await.map_err(|e| sdk_error(OP, key, e))?;
        let len = range.end - range.start;
        let request_id = out.request_id().map(str::to_string);
        debug!(op = OP, key, start = range.start, len, request_id, "get");
        let key = key.to_string();
        let chunks = futures_util::stream::unfold(Some(out.body), move |body| {
            let (key, request_id) = (key.clone(), request_id.clone());
            async move {
                let mut body = body?;
                match body.next().await {
                    None => None,
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                    Some(Err(e)) => {
                        let mut err = ObjectError::new(ErrorKind::Interrupted, OP, key)
                            .with_message(format!("reading the body: {}", error::innermost(&e)));
                        err.request_id = request_id;
                        Some((Err(err), None))
                    }
                }
            }
        });
        Ok(ObjectBody::new(Box::pin(chunks)))
    }

    /// A ListObjects (v1) page. Keys come URL-encoded (`encoding-type=url`) where the
    /// store applies it, so keys with control characters survive the XML.
    async fn list_v1(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        use aws_sdk_s3::types::EncodingType;
        const OP: &str = "ListObjects";
        let out = self
            .client
            .list_objects()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(max_keys)
            .set_marker(marker)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| sdk_error(OP, prefix, e))?;
        debug!(op = OP, prefix, request_id = out.request_id(), "listed");
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let (objects, common_prefixes) = page_entries(out.contents(), out.common_prefixes(), encoded);
        let next = if out.is_truncated().unwrap_or(false) {
            // NextMarker is only sent with a delimiter and not by every store; the greatest
            // key or prefix of the page is where the next page starts either way.
            let last = objects.iter().map(|o| o.key.clone()).chain(common_prefixes.iter().cloned()).max();
            let sent = out.next_marker().map(|m| decode_key(m, encoded));
            Some(
                sent.or(last)
                    .ok_or_else(|| malformed(OP, prefix, "a truncated listing came without a way to continue it"))?,
            )
        } else {
            None
        };
        Ok(ListPage { objects, common_prefixes, next })
    }

    async fn list_v2(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        use aws_sdk_s3::types::EncodingType;
        const OP: &str = "ListObjectsV2";
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(max_keys)
            .set_continuation_token(token)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| sdk_error(OP, prefix, e))?;
        debug!(op = OP, prefix, request_id = out.request_id(), "listed");
        let next = match (out.is_truncated().unwrap_or(false), out.next_continuation_token()) {
            (true, Some(t)) => Some(t.to_string()),
            (true, None) => return Err(malformed(OP, prefix, "a truncated listing came without a continuation token")),
            (false, _) => None,
        };
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let (objects, common_prefixes) = page_entries(out.contents(), out.common_prefixes(), encoded);
        Ok(ListPage { objects, common_prefixes, next })
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            // HeadBucket has no body, so a 404 carries no NoSuchBucket code.
            Err(e) => Err(match sdk_error("HeadBucket", "", e) {
                e if e.is(ErrorKind::NotFound) => ObjectError { kind: ErrorKind::NoSuchBucket, ..e },
                other => other,
            }),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        match self.list_version {
            ListVersion::V1 => self.list_v1(prefix, delimiter, continuation, max_keys).await,
            ListVersion::V2 => self.list_v2(prefix, delimiter, continuation, max_keys).await,
        }
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        const OP: &str = "HeadObject";
        let out =
            self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "head");
        Ok(object_info(&out))
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        self.get(key, range, |req| req.set_if_match(etag.map(str::to_string))).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        const OP: &str = "PutObject";
        let len = body.len();
        self.conditional(OP, key, condition, |if_match, if_none_match| async {
            let req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body.clone().into())
                .set_content_type(opts.content_type.clone())
                .set_metadata(Some(opts.metadata.clone()))
                .set_acl(opts.acl.as_deref().map(Into::into))
                .set_storage_class(opts.storage_class.as_deref().map(Into::into))
                .set_tagging(tagging_header(opts))
                .set_if_match(if_match)
                .set_if_none_match(if_none_match)
                .customize();
            let req = if self.sign_bodies { req } else { req.disable_payload_signing() };
            let out = req.send().await.map_err(|e| sdk_error(OP, key, e))?;
            debug!(op = OP, key, len, request_id = out.request_id(), "put");
            Ok(out.e_tag().map(str::to_string))
        })
        .await
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        use aws_sdk_s3::types::{MetadataDirective, TaggingDirective};
        const OP: &str = "CopyObject";
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
                .set_storage_class(opts.storage_class.as_deref().map(Into::into))
                // Without tags to set, the copy keeps the source's (S3's default).
                .set_tagging_directive(opts.tags.as_ref().map(|_| TaggingDirective::Replace))
                .set_tagging(tagging_header(opts)),
            None => req.metadata_directive(MetadataDirective::Copy),
        };
        let out = req.send().await.map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, source, key, request_id = out.request_id(), "copied");
        Ok(out.copy_object_result().and_then(|r| r.e_tag()).map(str::to_string))
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        const OP: &str = "DeleteObject";
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                debug!(op = OP, key, request_id = out.request_id(), "deleted");
                Ok(())
            }
            Err(e) => match sdk_error(OP, key, e) {
                e if e.is(ErrorKind::NotFound) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        const OP: &str = "DeleteObjects";
        let first = keys.first().map(String::as_str).unwrap_or_default();
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(OP, first, e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| malformed(OP, first, e.to_string()))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .customize()
            // XOS, like S3 before checksums, requires Content-MD5 on DeleteObjects.
            .mutate_request(content_md5)
            .send()
            .await
            .map_err(|e| sdk_error(OP, first, e))?;
        debug!(op = OP, count = keys.len(), request_id = out.request_id(), "deleted");
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (e.key().unwrap_or_default().to_string(), e.message().or(e.code()).unwrap_or_default().to_string())
            })
            .collect())
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        const OP: &str = "CreateMultipartUpload";
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(opts.content_type.clone())
            .set_metadata(Some(opts.metadata.clone()))
            .set_acl(opts.acl.as_deref().map(Into::into))
            .set_storage_class(opts.storage_class.as_deref().map(Into::into))
            .set_tagging(tagging_header(opts))
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "created");
        out.upload_id().map(str::to_string).ok_or_else(|| malformed(OP, key, "no upload id in the reply"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        const OP: &str = "UploadPart";
        let len = body.len();
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(body.into())
            .customize();
        let req = if self.sign_bodies { req } else { req.disable_payload_signing() };
        let out = req.send().await.map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, number, len, request_id = out.request_id(), "uploaded");
        let etag = out.e_tag().ok_or_else(|| malformed(OP, key, format!("part {number} came back without an ETag")))?;
        Ok(CompletedPart { number, etag: etag.to_string() })
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
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, number, request_id = out.request_id(), "copied");
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .ok_or_else(|| malformed(OP, key, format!("copied part {number} came back without an ETag")))?;
        Ok(CompletedPart { number, etag: etag.to_string() })
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkPart};
        const OP: &str = "CompleteMultipartUpload";
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts.iter().map(|p| SdkPart::builder().part_number(p.number).e_tag(&p.etag).build()).collect(),
            ))
            .build();
        self.conditional(OP, key, condition, |if_match, if_none_match| async {
            let out = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(upload.clone())
                .set_if_match(if_match)
                .set_if_none_match(if_none_match)
                .customize()
                .interceptor(deviations::RootElement::COMPLETE_MULTIPART_UPLOAD)
                .send()
                .await
                .map_err(|e| sdk_error(OP, key, e))?;
            debug!(op = OP, key, parts = parts.len(), request_id = out.request_id(), "completed");
            Ok(out.e_tag().map(str::to_string))
        })
        .await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        const OP: &str = "AbortMultipartUpload";
        let out = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "aborted");
        Ok(())
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        const OP: &str = "ListMultipartUploads";
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
            .await
            .map_err(|e| sdk_error(OP, prefix, e))?;
        debug!(op = OP, prefix, request_id = out.request_id(), "listed");
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
            let (key, upload_id) = sent
                .or(last)
                .ok_or_else(|| malformed(OP, prefix, "a truncated upload listing came without a way to continue it"))?;
            Some(UploadMarker { key: key.to_string(), upload_id: upload_id.to_string() })
        } else {
            None
        };
        Ok(UploadPage { uploads, next })
    }
    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        const OP: &str = "GetObjectTagging";
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "tags");
        Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        use aws_sdk_s3::types::{Tag, Tagging};
        if tags.is_empty() {
            const OP: &str = "DeleteObjectTagging";
            let out = self
                .client
                .delete_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| sdk_error(OP, key, e))?;
            debug!(op = OP, key, request_id = out.request_id(), "tags deleted");
            return Ok(());
        }
        const OP: &str = "PutObjectTagging";
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(OP, key, e.to_string()))?;
        let tagging =
            Tagging::builder().set_tag_set(Some(tag_set)).build().map_err(|e| malformed(OP, key, e.to_string()))?;
        let out = self
            .client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .customize()
            .mutate_request(content_md5)
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "tagged");
        Ok(())
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        const OP: &str = "GetObjectAcl";
        let out = self
            .client
            .get_object_acl()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, request_id = out.request_id(), "acl");
        Ok(settings::canned_acl(out.owner().and_then(|o| o.id()), out.grants()))
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        const OP: &str = "PutObjectAcl";
        let out = self
            .client
            .put_object_acl()
            .bucket(&self.bucket)
            .key(key)
            .acl(canned.into())
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, canned, request_id = out.request_id(), "acl set");
        Ok(())
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        use aws_sdk_s3::presigning::PresigningConfig;
        const OP: &str = "GetObject";
        let config = PresigningConfig::expires_in(expires).map_err(|e| malformed(OP, key, e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .presigned(config)
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        Ok(req.uri().to_string())
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        use aws_sdk_s3::types::EncodingType;
        const OP: &str = "ListObjectVersions";
        let (key_marker, version_id_marker) = after.map(|m| (m.key, m.version_id)).unzip();
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(max_keys)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_id_marker)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| sdk_error(OP, prefix, e))?;
        debug!(op = OP, prefix, request_id = out.request_id(), "listed");
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let objects = out.versions().iter().filter_map(|v| {
            Some(ObjectVersion {
                key: decode_key(v.key()?, encoded),
                version_id: v.version_id().unwrap_or("null").to_string(),
                last_modified: v.last_modified().and_then(to_system_time),
                size: v.size().unwrap_or(0).max(0) as u64,
                etag: v.e_tag().map(str::to_string),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
            })
        });
        let markers = out.delete_markers().iter().filter_map(|m| {
            Some(ObjectVersion {
                key: decode_key(m.key()?, encoded),
                version_id: m.version_id().unwrap_or("null").to_string(),
                last_modified: m.last_modified().and_then(to_system_time),
                size: 0,
                etag: None,
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
            })
        });
        // The SDK returns versions and delete markers in two lists; the store's order is
        // by key, newest first.
        let mut versions: Vec<ObjectVersion> = objects.chain(markers).collect();
        versions.sort_by(|a, b| {
            a.key.cmp(&b.key).then(b.last_modified.cmp(&a.last_modified)).then(b.is_latest.cmp(&a.is_latest))
        });
        let next = if out.is_truncated().unwrap_or(false) {
            let sent = out.next_key_marker().map(|k| decode_key(k, encoded)).zip(out.next_version_id_marker());
            let (key, version_id) =
                sent.ok_or_else(|| malformed(OP, prefix, "a truncated version listing came without its next markers"))?;
            Some(VersionMarker { key, version_id: version_id.to_string() })
        } else {
            None
        };
        Ok(VersionPage { versions, next })
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        const OP: &str = "HeadObject";
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| sdk_error(OP, key, e))?;
        debug!(op = OP, key, version_id, request_id = out.request_id(), "head");
        Ok(object_info(&out))
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        self.get(key, range, |req| req.version_id(version_id)).await
    }

    async fn get_bucket_setting(&self, _root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        let op = setting_op(which, "Get");
        let client = &self.client;
        let bucket = &self.bucket;
        let sent = match which {
            BucketSetting::Versioning => client
                .get_bucket_versioning()
                .bucket(bucket)
                .customize()
                .interceptor(deviations::RootElement::GET_BUCKET_VERSIONING)
                .send()
                .await
                .map(|out| out.status().map(|s| s.as_str().to_string()))
                .map_err(|e| sdk_error(op, "", e)),
            BucketSetting::Policy => client
                .get_bucket_policy()
                .bucket(bucket)
                .send()
                .await
                .map(|out| out.policy().map(str::to_string))
                .map_err(|e| sdk_error(op, "", e)),
            BucketSetting::Cors => client
                .get_bucket_cors()
                .bucket(bucket)
                .send()
                .await
                .map(|out| Some(store_settings::to_json(&settings::cors_from_sdk(out.cors_rules()))))
                .map_err(|e| sdk_error(op, "", e)),
            BucketSetting::Lifecycle => client
                .get_bucket_lifecycle_configuration()
                .bucket(bucket)
                .send()
                .await
                .map(|out| Some(store_settings::to_json(&settings::lifecycle_from_sdk(out.rules()))))
                .map_err(|e| sdk_error(op, "", e)),
            BucketSetting::Acl => client
                .get_bucket_acl()
                .bucket(bucket)
                .send()
                .await
                .map(|out| Some(settings::canned_acl(out.owner().and_then(|o| o.id()), out.grants())))
                .map_err(|e| sdk_error(op, "", e)),
        };
        match sent {
            Ok(value) => Ok(value),
            // NoSuchBucketPolicy, NoSuchCORSConfiguration, NoSuchLifecycleConfiguration.
            Err(e) if e.is(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_bucket_setting(&self, _root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        use aws_sdk_s3::types::VersioningConfiguration;
        let op = setting_op(which, "Put");
        let client = &self.client;
        let bucket = &self.bucket;
        let invalid = |e: store_settings::Invalid| malformed(op, "", e.to_string());
        match which {
            BucketSetting::Versioning => {
                let conf = VersioningConfiguration::builder().status(value.into()).build();
                client
                    .put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(conf)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error(op, "", e))
            }
            BucketSetting::Policy => client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(value)
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error(op, "", e)),
            BucketSetting::Cors => {
                let cors = settings::cors_to_sdk(&store_settings::parse_cors(value).map_err(invalid)?)
                    .map_err(|e| malformed(op, "", e))?;
                client
                    .put_bucket_cors()
                    .bucket(bucket)
                    .cors_configuration(cors)
                    .customize()
                    .mutate_request(content_md5)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error(op, "", e))
            }
            BucketSetting::Lifecycle => {
                let rules = settings::lifecycle_to_sdk(&store_settings::parse_lifecycle(value).map_err(invalid)?)
                    .map_err(|e| malformed(op, "", e))?;
                client
                    .put_bucket_lifecycle_configuration()
                    .bucket(bucket)
                    .lifecycle_configuration(rules)
                    .customize()
                    .mutate_request(content_md5)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error(op, "", e))
            }
            BucketSetting::Acl => client
                .put_bucket_acl()
                .bucket(bucket)
                .acl(value.into())
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error(op, "", e)),
        }?;
        debug!(op, "bucket setting stored");
        Ok(())
    }

    async fn delete_bucket_setting(&self, _root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        let op = setting_op(which, "Delete");
        let client = &self.client;
        let bucket = &self.bucket;
        match which {
            BucketSetting::Versioning => return self.put_bucket_setting("", which, "Suspended").await,
            BucketSetting::Acl => return self.put_bucket_setting("", which, "private").await,
            BucketSetting::Policy => {
                client.delete_bucket_policy().bucket(bucket).send().await.map(drop).map_err(|e| sdk_error(op, "", e))
            }
            BucketSetting::Cors => {
                client.delete_bucket_cors().bucket(bucket).send().await.map(drop).map_err(|e| sdk_error(op, "", e))
            }
            BucketSetting::Lifecycle => {
                client.delete_bucket_lifecycle().bucket(bucket).send().await.map(drop).map_err(|e| sdk_error(op, "", e))
            }
        }?;
        debug!(op, "bucket setting deleted");
        Ok(())
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

/// The objects and common prefixes of a listing page (v1 and v2 share these types), with
/// keys decoded when the store URL-encoded them.
fn page_entries(
    contents: &[aws_sdk_s3::types::Object],
    prefixes: &[aws_sdk_s3::types::CommonPrefix],
    encoded: bool,
) -> (Vec<ObjectSummary>, Vec<String>) {
    let objects = contents
        .iter()
        .filter_map(|o| {
            Some(ObjectSummary {
                key: decode_key(o.key()?, encoded),
                size: o.size().unwrap_or(0).max(0) as u64,
                last_modified: o.last_modified().and_then(to_system_time),
                etag: o.e_tag().map(str::to_string),
            })
        })
        .collect();
    let prefixes = prefixes.iter().filter_map(|p| p.prefix().map(|p| decode_key(p, encoded))).collect();
    (objects, prefixes)
}

/// A key as listed: percent-decoded when the listing says it used `encoding-type=url`.
fn decode_key(key: &str, encoded: bool) -> String {
    if !encoded {
        return key.to_string();
    }
    // S3 encodes a space as `+` in listings, as in a form.
    let plus_decoded = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded).decode_utf8_lossy().into_owned()
}

fn to_system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

/// The HeadObject reply as the store's [`ObjectInfo`].
fn object_info(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> ObjectInfo {
    ObjectInfo {
        size: out.content_length().unwrap_or(0).max(0) as u64,
        content_type: out.content_type().map(str::to_string),
        last_modified: out.last_modified().and_then(to_system_time),
        etag: out.e_tag().map(str::to_string),
        storage_class: out.storage_class().map(|c| c.as_str().to_string()),
        metadata: out.metadata().cloned().unwrap_or_default(),
        version_id: out.version_id().map(str::to_string),
    }
}

/// XOS, like S3 before checksums, requires Content-MD5 on DeleteObjects and on the
/// configuration PUTs (tagging, CORS, lifecycle).
fn content_md5(req: &mut aws_smithy_runtime_api::http::Request) {
    use md5::Digest;
    let digest = md5::Md5::digest(req.body().bytes().unwrap_or_default());
    req.headers_mut().insert("Content-MD5", aws_smithy_types::base64::encode(digest.as_slice()));
}

/// The operation name of reading (`Get`), replacing (`Put`) or deleting (`Delete`) a
/// bucket setting, for logs and errors.
fn setting_op(which: BucketSetting, verb: &str) -> &'static str {
    match (verb, which) {
        ("Get", BucketSetting::Versioning) => "GetBucketVersioning",
        ("Get", BucketSetting::Policy) => "GetBucketPolicy",
        ("Get", BucketSetting::Cors) => "GetBucketCors",
        ("Get", BucketSetting::Lifecycle) => "GetBucketLifecycleConfiguration",
        ("Get", BucketSetting::Acl) => "GetBucketAcl",
        ("Put", BucketSetting::Versioning) => "PutBucketVersioning",
        ("Put", BucketSetting::Policy) => "PutBucketPolicy",
        ("Put", BucketSetting::Cors) => "PutBucketCors",
        ("Put", BucketSetting::Lifecycle) => "PutBucketLifecycleConfiguration",
        ("Put", BucketSetting::Acl) => "PutBucketAcl",
        (_, BucketSetting::Policy) => "DeleteBucketPolicy",
        (_, BucketSetting::Cors) => "DeleteBucketCors",
        (_, BucketSetting::Lifecycle) => "DeleteBucketLifecycle",
        (_, BucketSetting::Versioning) => "PutBucketVersioning",
        (_, BucketSetting::Acl) => "PutBucketAcl",
    }
}

/// The `x-amz-tagging` header of an upload that sets tags.
fn tagging_header(opts: &PutOptions) -> Option<String> {
    opts.tags.as_ref().filter(|t| !t.is_empty()).map(store_settings::format_tags)
}

#[cfg(test)]
mod tests {
    use super::signs_bodies;

    #[test]
    fn bodies_are_signed_over_plain_http_only() {
        assert!(signs_bodies("http://127.0.0.1:9000"));
        assert!(!signs_bodies("https://xos.example.com"));
        assert!(!signs_bodies("HTTPS://xos.example.com"));
    }
}
