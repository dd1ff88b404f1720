//! Sends a request again when the store failed it transiently (throttling, 5xx, timeouts,
//! resets, an endpoint restarting), with exponential backoff and full jitter, so a burst of
//! 503 SlowDown costs one part a few retries instead of ending a multi-GB upload.
//!
//! Every request the core makes is safe to repeat: reads, whole-object PUTs and copies,
//! parts (a part sent again replaces itself), deletes. A completion whose reply was lost
//! and is sent again finds its upload gone (NotFound); the object then exists, which the
//! caller learns from the error's context in the log.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::debug;

use crate::metrics::OpLabel;

use super::{ObjectError, ObjectStore};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// The backoff ceiling before the first retry; it doubles per retry up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Ten retries, 100 ms doubling to 20 s: about a minute of patience in all, enough for
    /// a throttling burst or a store restart.
    fn default() -> Self {
        RetryPolicy { retries: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(20) }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1-based): uniformly random up to the exponential ceiling,
    /// so clients throttled together do not come back together.
    fn delay(&self, n: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1u32 << (n - 1).min(20)).min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// A store whose transient failures are retried by `policy`.
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> RetryingStore {
        RetryingStore { inner, policy }
    }
}

impl super::StoreLayer for RetryingStore {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    /// Every request, the start of a GET included; a body cut short later is the reader's
    /// to fetch again.
    fn request<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _key: &'a str,
        mut send: impl FnMut() -> BoxFuture<'a, Result<T, ObjectError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ObjectError>> {
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                match send().await {
                    Err(e) if e.is_transient() && attempt < self.policy.retries => {
                        attempt += 1;
                        crate::metrics::global().retries.get_or_create(&OpLabel { op: e.op.to_string() }).inc();
                        let wait = self.policy.delay(attempt);
                        debug!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                        tokio::time::sleep(wait).await;
                    }
                    other => return other,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore, PutOptions};

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy { retries, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(4) }
    }

    #[tokio::test]
    async fn transient_failures_are_sent_again_until_they_pass() {
        let memory = MemoryStore::default();
        let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 7));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).op("PutObject").times(3));
        let store = RetryingStore::new(faulty.clone(), quick(10));
        store.put_object("k", Bytes::from_static(b"data"), &PutOptions::default()).await.unwrap();
        assert_eq!(memory.requests("PutObject"), 1, "failed attempts never reached the store");
        assert_eq!(faulty.injected(), 3);
        assert_eq!(memory.object("k").unwrap().data, Bytes::from_static(b"data"));
    }

    #[tokio::test]
    async fn retries_give_up_after_the_policy_and_keep_the_cause() {
        let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::default()), 7));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)).op("HeadObject"));
        let store = RetryingStore::new(faulty.clone(), quick(4));
        let err = store.head_object("k").await.unwrap_err();
        assert_eq!((err.kind, err.op, err.key.as_str()), (ErrorKind::ServerError, "HeadObject", "k"));
        assert_eq!(faulty.injected(), 5, "the first attempt and four retries");
    }

    #[tokio::test]
    async fn answers_that_will_not_change_are_not_retried() {
        let memory = MemoryStore::default();
        let store = RetryingStore::new(Arc::new(memory.clone()), quick(10));
        assert!(store.head_object("missing").await.unwrap_err().is(ErrorKind::NotFound));
        assert_eq!(memory.requests("HeadObject"), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let p = RetryPolicy { retries: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for _ in 0..100 {
            assert!(p.delay(1) <= Duration::from_millis(100));
            assert!(p.delay(3) <= Duration::from_millis(400));
            assert!(p.delay(30) <= Duration::from_secs(1));
        }
    }
}
