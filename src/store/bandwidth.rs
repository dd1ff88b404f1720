//! `--max-bandwidth DOWN[:UP]`: one token bucket per direction for the whole mount. GET
//! bodies are paced as their chunks arrive (the socket's window then slows the sender);
//! PUT and part bodies wait for their bytes before they are sent. Requests without bodies
//! are not held.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
// Tokio's clock: the same as the system's, except in tests with time paused.
use tokio::time::Instant;

use super::{CompletedPart, ObjectBody, ObjectError, ObjectStore, Precondition, PutOptions};

/// Bytes per second that may pass, on average; a burst of at most a tenth of a second's
/// worth goes at once after a pause.
pub struct TokenBucket {
    rate: f64,
    state: Mutex<Tokens>,
}

struct Tokens {
    /// Negative while callers wait for bytes already granted to them.
    available: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_second: u64) -> TokenBucket {
        let rate = bytes_per_second.max(1) as f64;
        TokenBucket { rate, state: Mutex::new(Tokens { available: rate / 10.0, at: Instant::now() }) }
    }

    /// Takes `bytes`, waiting until the rate allows them. Callers are served in the order
    /// they ask: each takes its bytes at once (going into debt) and waits the debt out.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let mut t = self.state.lock();
            let now = Instant::now();
            let refilled = t.available + now.duration_since(t.at).as_secs_f64() * self.rate;
            t.available = refilled.min(self.rate / 10.0) - bytes as f64;
            t.at = now;
            (t.available < 0.0).then(|| Duration::from_secs_f64(-t.available / self.rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A store whose body bytes pass through the buckets given (`None`: no cap that way).
pub struct BandwidthLimit {
    inner: Arc<dyn ObjectStore>,
    down: Option<Arc<TokenBucket>>,
    up: Option<TokenBucket>,
}

impl BandwidthLimit {
    pub fn new(inner: Arc<dyn ObjectStore>, down: Option<u64>, up: Option<u64>) -> BandwidthLimit {
        BandwidthLimit { inner, down: down.map(|r| Arc::new(TokenBucket::new(r))), up: up.map(TokenBucket::new) }
    }

    /// `body`, each chunk held until the download bucket lets it through.
    fn paced(&self, body: ObjectBody) -> ObjectBody {
        let Some(down) = self.down.clone() else { return body };
        let chunks = futures_util::stream::unfold((body, down), |(mut body, down)| async move {
            let chunk = body.next_chunk().await.transpose()?;
            if let Ok(bytes) = &chunk {
                down.take(bytes.len() as u64).await;
            }
            Some((chunk, (body, down)))
        });
        ObjectBody::new(chunks.boxed())
    }

    async fn send(&self, bytes: usize) {
        if let Some(up) = &self.up {
            up.take(bytes as u64).await;
        }
    }
}

#[async_trait]
impl super::StoreLayer for BandwidthLimit {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        let body = self.inner.get_stream(key, range, etag).await?;
        Ok(self.paced(body))
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.send(body.len()).await;
        self.inner.put_object_if(key, body, opts, condition).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        self.send(body.len()).await;
        self.inner.upload_part(key, upload_id, number, body).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        let body = self.inner.get_version_stream(key, version_id, range).await?;
        Ok(self.paced(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock: sleeps advance it at once, so rates are checked exactly.
    #[tokio::test(start_paused = true)]
    async fn the_bucket_passes_the_rate_on_average_after_a_small_burst() {
        let bucket = TokenBucket::new(1_000_000);
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            bucket.take(100_000).await;
        }
        // 10 MB at 1 MB/s, less the first tenth of a second's burst.
        let took = started.elapsed().as_secs_f64();
        assert!((9.85..=10.0).contains(&took), "{took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_get_body_arrives_whole_at_the_rate() {
        let memory = crate::store::MemoryStore::default();
        let data = Bytes::from(vec![7u8; 2_000_000]);
        memory.put_object("k", data.clone(), &PutOptions::default()).await.unwrap();
        let limited = BandwidthLimit::new(Arc::new(memory), Some(500_000), None);
        let started = tokio::time::Instant::now();
        let got = limited.get_range("k", 0..2_000_000).await.unwrap();
        assert_eq!(got, data);
        let took = started.elapsed().as_secs_f64();
        assert!((3.8..=4.0).contains(&took), "{took} s for 2 MB at 0.5 MB/s");
    }
}
