//! Counts every request into the process's metrics ([`crate::metrics`]): operation,
//! status, latency, body bytes each way. It wraps the S3 store below the retries, so each
//! attempt counts.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{CompletedPart, ErrorKind, ObjectBody, ObjectError, ObjectStore, Precondition, PutOptions};
use crate::metrics::{global, Metrics};

pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: &'static Metrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> MeteredStore {
        MeteredStore { inner, metrics: global() }
    }

    async fn count<T>(
        &self,
        op: &str,
        request: impl Future<Output = Result<T, ObjectError>>,
    ) -> Result<T, ObjectError> {
        let started = Instant::now();
        let result = request.await;
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => self.metrics.request(op, None, true, seconds),
            Err(e) => {
                if e.kind == ErrorKind::Throttled {
                    self.metrics.throttled.inc();
                }
                self.metrics.request(op, e.status, false, seconds);
            }
        }
        result
    }
}

impl MeteredStore {
    /// `body`, its bytes counted as they arrive.
    fn counted(&self, body: ObjectBody) -> ObjectBody {
        let down = self.metrics.bytes_down.clone();
        let chunks = futures_util::stream::unfold(body, |mut body| async move {
            body.next_chunk().await.transpose().map(|chunk| (chunk, body))
        })
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                down.inc_by(bytes.len() as u64);
            }
        });
        ObjectBody::new(chunks.boxed())
    }
}

#[async_trait]
impl super::StoreLayer for MeteredStore {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        _key: &'a str,
        mut send: impl FnMut() -> BoxFuture<'a, Result<T, ObjectError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ObjectError>> {
        Box::pin(self.count(op, send()))
    }

    /// Times the request until the body starts; counts the body's bytes as they arrive.
    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        let body = self.count("GetObject", self.inner.get_stream(key, range, etag)).await?;
        Ok(self.counted(body))
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let len = body.len() as u64;
        let stored = self.count("PutObject", self.inner.put_object_if(key, body, opts, condition)).await?;
        self.metrics.bytes_up.inc_by(len);
        Ok(stored)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let len = body.len() as u64;
        let part = self.count("UploadPart", self.inner.upload_part(key, upload_id, number, body)).await?;
        self.metrics.bytes_up.inc_by(len);
        Ok(part)
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        // Signed here: no request.
        self.inner.presign_get(key, version_id, expires).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        let body = self.count("GetObject", self.inner.get_version_stream(key, version_id, range)).await?;
        Ok(self.counted(body))
    }
}
