//! [`FaultyStore`]: wraps a store and makes chosen requests fail, slow down or lose their
//! reply, by rule and reproducibly from a seed, so tests can show what the core does when
//! the network or the service misbehaves.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use parking_lot::Mutex;

use super::{ErrorKind, ObjectBody, ObjectError, ObjectStore};

const GET_OBJECT: &str = "GetObject";

/// What happens to a request a rule picks.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The request fails without reaching the store: Throttled is 503 SlowDown, ServerError
    /// 500 InternalError; Timeout, Unreachable and Interrupted come with no status.
    Error(ErrorKind),
    /// The request reaches the store and takes effect, then its reply is lost: the caller
    /// sees this error.
    ErrorAfter(ErrorKind),
    /// The request is sent after this delay.
    Latency(Duration),
    /// GetObject only: the body breaks (Interrupted) after this many bytes.
    CutBody { after: u64 },
}

/// Which requests get a fault, and how often.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The S3 operation (`GetObject`, `UploadPart`, ...); `None` for any.
    pub op: Option<&'static str>,
    /// Matched against the object key, or the prefix for listings.
    pub key_prefix: Option<String>,
    pub fault: Fault,
    /// Let this many matching requests through first.
    pub skip: u32,
    /// Fire at most this often; `None` for every time.
    pub times: Option<u32>,
    /// 1.0 for always; below that, the seeded generator decides.
    pub probability: f64,
}

impl FaultRule {
    /// A rule giving `fault` to every request.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule { op: None, key_prefix: None, fault, skip: 0, times: None, probability: 1.0 }
    }

    pub fn op(mut self, op: &'static str) -> FaultRule {
        self.op = Some(op);
        self
    }

    pub fn key_prefix(mut self, prefix: impl Into<String>) -> FaultRule {
        self.key_prefix = Some(prefix.into());
        self
    }

    pub fn skip(mut self, requests: u32) -> FaultRule {
        self.skip = requests;
        self
    }

    pub fn times(mut self, times: u32) -> FaultRule {
        self.times = Some(times);
        self
    }

    pub fn probability(mut self, probability: f64) -> FaultRule {
        self.probability = probability;
        self
    }
}

/// A store that injects faults into the requests it forwards to another.
///
/// Rules are consulted in the order they were added and the first that fires decides; the
/// rules after it do not see the request (nor count it towards their `skip`).
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Mutex<State>,
}

struct State {
    rules: Vec<ArmedRule>,
    random: XorShift,
    down: bool,
    injected: u64,
}

struct ArmedRule {
    rule: FaultRule,
    matched: u32,
    fired: u32,
}

impl ArmedRule {
    /// The fault to give this request, counting it.
    fn fire(&mut self, op: &str, key: &str, random: &mut XorShift) -> Option<Fault> {
        let rule = &self.rule;
        let applies = rule.op.is_none_or(|o| o == op)
            && rule.key_prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && (op == GET_OBJECT || !matches!(rule.fault, Fault::CutBody { .. }));
        if !applies {
            return None;
        }
        self.matched = self.matched.saturating_add(1);
        if self.matched <= rule.skip || rule.times.is_some_and(|t| self.fired >= t) || !random.chance(rule.probability)
        {
            return None;
        }
        self.fired += 1;
        Some(rule.fault.clone())
    }
}

/// xorshift64*: small, and the same sequence from the same seed on every platform.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // The state must never be zero; the constant spreads small seeds over all bits.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Draws only when the outcome is not certain, so rules at 1.0 leave the sequence alone.
    fn chance(&mut self, probability: f64) -> bool {
        if probability >= 1.0 {
            return true;
        }
        probability > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < probability
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64) -> FaultyStore {
        let state = State { rules: Vec::new(), random: XorShift::new(seed), down: false, injected: 0 };
        FaultyStore { inner, state: Mutex::new(state) }
    }

    pub fn add(&self, rule: FaultRule) {
        self.state.lock().rules.push(ArmedRule { rule, matched: 0, fired: 0 });
    }

    /// Removes every rule; the count of injected faults is kept.
    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// While down, every request fails at once as Unreachable, like a store being restarted.
    pub fn set_down(&self, down: bool) {
        self.state.lock().down = down;
    }

    /// Faults injected so far, requests refused while down included.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    fn decide(&self, op: &'static str, key: &str) -> Option<Fault> {
        let mut state = self.state.lock();
        let State { rules, random, down, injected } = &mut *state;
        let fault = if *down {
            Some(Fault::Error(ErrorKind::Unreachable))
        } else {
            rules.iter_mut().find_map(|r| r.fire(op, key, random))
        };
        if fault.is_some() {
            *injected += 1;
        }
        fault
    }
}

/// Sends `request` (a future not yet polled, so dropping it means it never reaches the
/// store) as `fault` says.
async fn apply<T>(
    fault: Option<Fault>,
    op: &'static str,
    key: &str,
    request: impl Future<Output = Result<T, ObjectError>>,
) -> Result<T, ObjectError> {
    match fault {
        Some(Fault::Error(kind)) => Err(injected_error(kind, op, key)),
        Some(Fault::ErrorAfter(kind)) => {
            let _lost_reply = request.await;
            Err(injected_error(kind, op, key))
        }
        Some(Fault::Latency(delay)) => {
            tokio::time::sleep(delay).await;
            request.await
        }
        // Only GetObject is given CutBody, and it cuts its body itself.
        Some(Fault::CutBody { .. }) | None => request.await,
    }
}

/// The error S3 (or the network) would give for `kind`.
fn injected_error(kind: ErrorKind, op: &'static str, key: &str) -> ObjectError {
    let error = ObjectError::new(kind, op, key).with_message("injected fault");
    let (status, code) = match kind {
        ErrorKind::NotFound => (404, "NoSuchKey"),
        ErrorKind::NoSuchBucket => (404, "NoSuchBucket"),
        ErrorKind::AccessDenied => (403, "AccessDenied"),
        ErrorKind::PreconditionFailed => (412, "PreconditionFailed"),
        ErrorKind::InvalidRange => (416, "InvalidRange"),
        ErrorKind::Throttled => (503, "SlowDown"),
        ErrorKind::ServerError => (500, "InternalError"),
        ErrorKind::Rejected => (400, "InvalidRequest"),
        ErrorKind::AlreadyExists => (409, "BucketAlreadyOwnedByYou"),
        ErrorKind::NotEmpty => (409, "BucketNotEmpty"),
        // Failures of the connection, not answers of the service.
        ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Interrupted | ErrorKind::Malformed => return error,
    };
    error.with_status(status).with_code(code)
}

enum CutBody {
    Receiving { body: ObjectBody, left: u64 },
    Breaking,
    Ended,
}

/// `body`, failing with Interrupted once `after` bytes were delivered (if it is longer).
fn cut_body(body: ObjectBody, after: u64, key: &str) -> ObjectBody {
    let broken = ObjectError::new(ErrorKind::Interrupted, GET_OBJECT, key)
        .with_message(format!("injected fault: body cut after {after} bytes"));
    let chunks = stream::unfold(CutBody::Receiving { body, left: after }, move |cut| {
        let broken = broken.clone();
        async move {
            match cut {
                CutBody::Ended => None,
                CutBody::Breaking => Some((Err(broken), CutBody::Ended)),
                CutBody::Receiving { mut body, left } => match body.next_chunk().await {
                    Ok(Some(chunk)) if chunk.len() as u64 <= left => {
                        let left = left - chunk.len() as u64;
                        Some((Ok(chunk), CutBody::Receiving { body, left }))
                    }
                    Ok(Some(chunk)) if left > 0 => Some((Ok(chunk.slice(..left as usize)), CutBody::Breaking)),
                    Ok(Some(_)) => Some((Err(broken), CutBody::Ended)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), CutBody::Ended)),
                },
            }
        }
    });
    ObjectBody::new(chunks.boxed())
}

#[async_trait]
impl super::StoreLayer for FaultyStore {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        key: &'a str,
        mut send: impl FnMut() -> BoxFuture<'a, Result<T, ObjectError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ObjectError>> {
        Box::pin(apply(self.decide(op, key), op, key, send()))
    }

    /// Not through `request`: a CutBody fault cuts the body the request returns.
    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        match self.decide(GET_OBJECT, key) {
            Some(Fault::CutBody { after }) => {
                let body = self.inner.get_stream(key, range, etag).await?;
                Ok(cut_body(body, after, key))
            }
            fault => apply(fault, GET_OBJECT, key, self.inner.get_stream(key, range, etag)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::super::{MemoryStore, ObjectInfo, PutOptions};
    use super::*;

    fn setup(seed: u64) -> (MemoryStore, FaultyStore) {
        let memory = MemoryStore::with_min_part_size(1);
        let faulty = FaultyStore::new(Arc::new(memory.clone()), seed);
        (memory, faulty)
    }

    async fn put(store: &dyn ObjectStore, key: &str, data: &'static [u8]) -> Result<Option<String>, ObjectError> {
        store.put_object(key, Bytes::from_static(data), &PutOptions::default()).await
    }

    fn error_parts(e: &ObjectError) -> (ErrorKind, Option<u16>, Option<&str>) {
        (e.kind, e.status, e.code.as_deref())
    }

    #[tokio::test]
    async fn an_error_is_answered_without_reaching_the_store() {
        let (memory, faulty) = setup(1);
        let cases = [
            (ErrorKind::Throttled, Some(503), Some("SlowDown")),
            (ErrorKind::ServerError, Some(500), Some("InternalError")),
            (ErrorKind::Timeout, None, None),
            (ErrorKind::Unreachable, None, None),
            (ErrorKind::Interrupted, None, None),
        ];
        for (kind, status, code) in cases {
            faulty.clear();
            faulty.add(FaultRule::new(Fault::Error(kind)).op("PutObject"));
            let e = put(&faulty, "k", b"data").await.unwrap_err();
            assert_eq!(error_parts(&e), (kind, status, code));
            assert_eq!((e.op, e.key.as_str()), ("PutObject", "k"));
        }
        assert_eq!(memory.requests("PutObject"), 0);
        assert!(memory.keys().is_empty());
        assert_eq!(faulty.injected(), 5);
        // Other operations pass.
        faulty.head_bucket().await.unwrap();
        assert_eq!(memory.requests("HeadBucket"), 1);
    }

    #[tokio::test]
    async fn error_after_takes_effect_but_the_reply_is_lost() {
        let (memory, faulty) = setup(1);
        faulty.add(FaultRule::new(Fault::ErrorAfter(ErrorKind::Timeout)).op("PutObject").times(1));
        let e = put(&faulty, "k", b"stored").await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::Timeout, None, None));
        assert_eq!(memory.object("k").unwrap().data, "stored");

        let id = faulty.create_multipart_upload("m", &PutOptions::default()).await.unwrap();
        let part = faulty.upload_part("m", &id, 1, Bytes::from_static(b"p")).await.unwrap();
        faulty.add(FaultRule::new(Fault::ErrorAfter(ErrorKind::ServerError)).op("CompleteMultipartUpload"));
        let e = faulty.complete_multipart_upload("m", &id, &[part]).await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::ServerError, Some(500), Some("InternalError")));
        assert_eq!(memory.object("m").unwrap().data, "p");
        assert!(memory.unfinished_uploads().is_empty());
    }

    #[tokio::test]
    async fn latency_delays_the_request_then_sends_it() {
        let (memory, faulty) = setup(1);
        faulty.add(FaultRule::new(Fault::Latency(Duration::from_millis(60))).op("PutObject"));
        let started = Instant::now();
        put(&faulty, "k", b"late").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert!(memory.object("k").is_some());
        assert_eq!(faulty.injected(), 1);
    }

    async fn receive(mut body: ObjectBody) -> (Vec<u8>, Option<ObjectError>) {
        let mut data = Vec::new();
        loop {
            match body.next_chunk().await {
                Ok(Some(chunk)) => data.extend_from_slice(&chunk),
                Ok(None) => return (data, None),
                Err(e) => return (data, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn cut_body_breaks_a_get_after_that_many_bytes() {
        let (memory, faulty) = setup(1);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        memory.put_object("big", Bytes::from(data.clone()), &PutOptions::default()).await.unwrap();
        for after in [0, 1000, 65_536, 150_000] {
            faulty.clear();
            faulty.add(FaultRule::new(Fault::CutBody { after }));
            let (got, error) = receive(faulty.get_stream("big", 0..200_000, None).await.unwrap()).await;
            assert_eq!(got, &data[..after as usize]);
            let error = error.unwrap();
            assert_eq!((error.kind, error.op, error.key.as_str()), (ErrorKind::Interrupted, "GetObject", "big"));
            assert!(error.is_transient());
        }
        // A body no longer than the cut arrives whole.
        let (got, error) = receive(faulty.get_stream("big", 0..1000, None).await.unwrap()).await;
        assert_eq!((got.as_slice(), error), (&data[..1000], None));
        // Other operations have no body to cut, so the rule does not count them.
        let injected = faulty.injected();
        faulty.head_object("big").await.unwrap();
        assert_eq!(faulty.injected(), injected);
    }

    #[tokio::test]
    async fn skip_lets_requests_through_first_and_times_limits_the_faults() {
        let (memory, faulty) = setup(1);
        put(&memory, "k", b"x").await.unwrap();
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)).op("HeadObject").skip(2).times(3));
        let mut outcomes = Vec::new();
        for _ in 0..7 {
            outcomes.push(faulty.head_object("k").await.is_ok());
        }
        assert_eq!(outcomes, [true, true, false, false, false, true, true]);
        assert_eq!(faulty.injected(), 3);
        assert_eq!(memory.requests("HeadObject"), 4);
    }

    async fn pattern(seed: u64) -> Vec<bool> {
        let (memory, faulty) = setup(seed);
        put(&memory, "k", b"x").await.unwrap();
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).probability(0.3));
        let mut failed = Vec::new();
        for _ in 0..400 {
            failed.push(faulty.head_object("k").await.is_err());
        }
        assert_eq!(faulty.injected(), failed.iter().filter(|f| **f).count() as u64);
        failed
    }

    #[tokio::test]
    async fn probability_is_reproducible_from_the_seed() {
        let first = pattern(42).await;
        assert_eq!(first, pattern(42).await);
        assert_ne!(first, pattern(43).await);
        let failures = first.iter().filter(|f| **f).count();
        assert!((80..160).contains(&failures), "{failures} of 400 failed at probability 0.3");

        let (memory, faulty) = setup(0);
        put(&memory, "k", b"x").await.unwrap();
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).probability(0.0));
        for _ in 0..100 {
            faulty.head_object("k").await.unwrap();
        }
        assert_eq!(faulty.injected(), 0);
    }

    #[tokio::test]
    async fn the_first_rule_that_fires_decides() {
        let (memory, faulty) = setup(1);
        put(&memory, "a/x", b"x").await.unwrap();
        put(&memory, "b", b"x").await.unwrap();
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).key_prefix("a/").times(1));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op("HeadObject"));
        let kind = |r: Result<ObjectInfo, ObjectError>| r.unwrap_err().kind;
        assert_eq!(kind(faulty.head_object("a/x").await), ErrorKind::Throttled);
        assert_eq!(kind(faulty.head_object("a/x").await), ErrorKind::AccessDenied);
        assert_eq!(kind(faulty.head_object("b").await), ErrorKind::AccessDenied);
        faulty.get_range("b", 0..1).await.unwrap();
    }

    #[tokio::test]
    async fn rules_match_the_object_key_the_listing_prefix_or_the_first_deleted_key() {
        let (memory, faulty) = setup(1);
        put(&memory, "src", b"data").await.unwrap();
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)).key_prefix("hit/"));
        let hit = |e: ObjectError| assert_eq!(e.kind, ErrorKind::ServerError);

        hit(faulty.list("hit/", None, None, 10).await.unwrap_err());
        faulty.list("", None, None, 10).await.unwrap();
        hit(faulty.copy_object("src", None, "hit/copy", None).await.unwrap_err());
        faulty.copy_object("src", None, "copy", None).await.unwrap();
        hit(faulty.delete_objects(&["hit/a".into(), "b".into()]).await.unwrap_err());
        faulty.delete_objects(&["b".into(), "hit/a".into()]).await.unwrap();
        faulty.head_bucket().await.unwrap();

        let id = memory.create_multipart_upload("hit/m", &PutOptions::default()).await.unwrap();
        hit(faulty.create_multipart_upload("hit/m", &PutOptions::default()).await.unwrap_err());
        hit(faulty.upload_part("hit/m", &id, 1, Bytes::from_static(b"p")).await.unwrap_err());
        hit(faulty.upload_part_copy("hit/m", &id, 1, "src", "etag", 0..1).await.unwrap_err());
        hit(faulty.complete_multipart_upload("hit/m", &id, &[]).await.unwrap_err());
        hit(faulty.abort_multipart_upload("hit/m", &id).await.unwrap_err());
        hit(faulty.list_multipart_uploads("hit/", None, 10).await.unwrap_err());
        assert_eq!(faulty.list_multipart_uploads("", None, 10).await.unwrap().uploads.len(), 1);
    }

    #[tokio::test]
    async fn while_down_every_request_is_unreachable() {
        let (memory, faulty) = setup(1);
        put(&faulty, "k", b"x").await.unwrap();
        memory.reset_requests();
        faulty.set_down(true);
        let e = faulty.head_object("k").await.unwrap_err();
        assert_eq!(error_parts(&e), (ErrorKind::Unreachable, None, None));
        assert_eq!(faulty.head_bucket().await.unwrap_err().kind, ErrorKind::Unreachable);
        assert_eq!(faulty.get_range("k", 0..1).await.unwrap_err().kind, ErrorKind::Unreachable);
        assert_eq!(memory.requests("HeadObject") + memory.requests("HeadBucket") + memory.requests("GetObject"), 0);
        assert_eq!(faulty.injected(), 3);
        faulty.set_down(false);
        faulty.head_object("k").await.unwrap();
    }

    #[tokio::test]
    async fn clear_removes_the_rules() {
        let (_memory, faulty) = setup(1);
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)));
        faulty.head_bucket().await.unwrap_err();
        faulty.clear();
        faulty.head_bucket().await.unwrap();
        assert_eq!(faulty.injected(), 1);
    }
}
