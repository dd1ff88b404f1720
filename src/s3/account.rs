//! An account's requests over aws-sdk-s3 (ListBuckets, CreateBucket, DeleteBucket), and
//! a store per bucket sharing one connection.

use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::types::{BucketCannedAcl, BucketLocationConstraint, CreateBucketConfiguration};
use aws_types::request_id::RequestId;
use tracing::debug;

use super::error::sdk_error;
use super::{to_system_time, S3Store};
use crate::config::S3Config;
use crate::store::{BucketSummary, Buckets, ObjectError, ObjectStore};

pub struct S3Buckets {
    /// The connection every bucket's store shares; its own bucket is unused.
    connection: S3Store,
    region: String,
}

impl S3Buckets {
    pub fn new(cfg: &S3Config, credentials: SharedCredentialsProvider) -> S3Buckets {
        S3Buckets { connection: S3Store::new(cfg, credentials), region: cfg.region.clone() }
    }
}

/// The canned ACLs a bucket can be created with; the object-only ones
/// (`bucket-owner-read`, `bucket-owner-full-control`) leave the store's default.
fn bucket_acl(acl: Option<&str>) -> Option<BucketCannedAcl> {
    match acl? {
        a @ ("private" | "public-read" | "public-read-write" | "authenticated-read") => Some(a.into()),
        _ => None,
    }
}

#[async_trait]
impl Buckets for S3Buckets {
    async fn list_buckets(&self) -> Result<Vec<BucketSummary>, ObjectError> {
        const OP: &str = "ListBuckets";
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .connection
                .client
                .list_buckets()
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| sdk_error(OP, "", e))?;
            debug!(op = OP, request_id = out.request_id(), "listed");
            all.extend(out.buckets().iter().filter_map(|b| {
                Some(BucketSummary { name: b.name()?.to_string(), created: b.creation_date().and_then(to_system_time) })
            }));
            match out.continuation_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(all),
            }
        }
    }

    async fn create_bucket(&self, name: &str, acl: Option<&str>) -> Result<(), ObjectError> {
        const OP: &str = "CreateBucket";
        let send = |location: Option<CreateBucketConfiguration>| {
            self.connection
                .client
                .create_bucket()
                .bucket(name)
                .set_acl(bucket_acl(acl))
                .set_create_bucket_configuration(location)
                .send()
        };
        // XOS's guide creates buckets without a location; AWS outside us-east-1 wants the
        // region named.
        let out = match send(None).await.map_err(|e| sdk_error(OP, name, e)) {
            Err(e) if e.code.as_deref().is_some_and(|c| c.contains("LocationConstraint")) => {
                let location = CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build();
                send(Some(location)).await.map_err(|e| sdk_error(OP, name, e))?
            }
            other => other?,
        };
        debug!(op = OP, bucket = name, request_id = out.request_id(), "bucket created");
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
        const OP: &str = "DeleteBucket";
        let out =
            self.connection.client.delete_bucket().bucket(name).send().await.map_err(|e| sdk_error(OP, name, e))?;
        debug!(op = OP, bucket = name, request_id = out.request_id(), "bucket deleted");
        Ok(())
    }

    fn bucket(&self, name: &str) -> Arc<dyn ObjectStore> {
        Arc::new(self.connection.for_bucket(name))
    }
}
