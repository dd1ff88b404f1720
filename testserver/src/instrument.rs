//! Request accounting and fault injection, layered over either backend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use s3s::{S3Error, S3ErrorCode, S3Result, S3};

/// Per-operation request counters, keyed by S3 operation name ("GetObject", "UploadPart", ...).
#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<HashMap<&'static str, OpStats>>,
    gets: Mutex<Vec<GetRange>>,
    /// Body bytes of the GetObject answers, whatever their range.
    get_bytes: AtomicU64,
}

/// The byte range one GetObject asked for (`len` is `None` for "to the end" or no range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRange {
    pub key: String,
    pub start: u64,
    pub len: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct OpStats {
    count: u64,
    in_flight: u64,
    max_in_flight: u64,
}

impl Stats {
    /// Requests of `op` received since start or the last [`Stats::reset`], including
    /// those answered with an injected fault.
    pub fn count(&self, op: &str) -> u64 {
        self.ops.lock().get(op).map_or(0, |s| s.count)
    }

    /// The most requests of `op` handled at the same time, to tell parallel clients from
    /// serial ones.
    pub fn max_in_flight(&self, op: &str) -> u64 {
        self.ops.lock().get(op).map_or(0, |s| s.max_in_flight)
    }

    /// The ranges of the GetObject requests received, in arrival order.
    pub fn get_ranges(&self) -> Vec<GetRange> {
        self.gets.lock().clone()
    }

    /// Bytes the GetObject answers since start or the last [`Stats::reset`] carried (or
    /// began to: a client that goes away early takes fewer).
    pub fn get_bytes(&self) -> u64 {
        self.get_bytes.load(Ordering::Relaxed)
    }

    /// Requests of `op` being handled now (a delayed request counts until answered or
    /// until its client goes away).
    pub fn in_flight(&self, op: &str) -> u64 {
        self.ops.lock().get(op).map_or(0, |s| s.in_flight)
    }

    /// Forgets counts, e.g. after seeding, so assertions see only the traffic under test.
    /// Requests still running keep counting towards `max_in_flight`.
    pub fn reset(&self) {
        self.gets.lock().clear();
        self.get_bytes.store(0, Ordering::Relaxed);
        for s in self.ops.lock().values_mut() {
            s.count = 0;
            s.max_in_flight = s.in_flight;
        }
    }

    fn enter(&self, op: &'static str) -> InFlight<'_> {
        let mut ops = self.ops.lock();
        let s = ops.entry(op).or_default();
        s.count += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight { stats: self, op }
    }
}

/// Marks one request of `op` as running until dropped (also when the client disconnects).
struct InFlight<'a> {
    stats: &'a Stats,
    op: &'static str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.stats.ops.lock().get_mut(self.op) {
            s.in_flight -= 1;
        }
    }
}

/// What a matching [`FaultRule`] does to a request.
#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this HTTP status and the matching S3 error code (500 InternalError,
    /// 503 SlowDown, 403 AccessDenied, 404 NoSuchKey, ...) without reaching the backend.
    Error { status: u16 },
    /// Sleep (asynchronously) before handling the request normally.
    Delay(Duration),
}

/// Injects `action` into requests of operation `op` whose key (or list prefix) contains
/// `key_contains`, for the next `remaining` requests (`None`: until [`Faults::clear`]).
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub op: String,
    pub key_contains: Option<String>,
    pub action: FaultAction,
    pub remaining: Option<u32>,
}

/// The active fault rules; the first matching rule wins.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.rules.lock().push(rule);
    }

    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    /// Consumes one use of the first rule matching the request.
    fn take(&self, op: &str, key: Option<&str>) -> Option<FaultAction> {
        let mut rules = self.rules.lock();
        let i = rules.iter().position(|r| {
            r.op == op
                && r.remaining != Some(0)
                && r.key_contains.as_deref().is_none_or(|s| key.is_some_and(|k| k.contains(s)))
        })?;
        let action = rules[i].action.clone();
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(action)
    }
}

/// Wraps a backend so every request is counted in [`Stats`] and subject to [`Faults`].
pub struct Instrumented<S> {
    inner: S,
    stats: Arc<Stats>,
    faults: Arc<Faults>,
}

impl<S: S3> Instrumented<S> {
    pub fn new(inner: S, stats: Arc<Stats>, faults: Arc<Faults>) -> Self {
        Instrumented { inner, stats, faults }
    }

    fn observe_get(&self, input: &s3s::dto::GetObjectInput) {
        let (start, len) = match input.range {
            Some(s3s::dto::Range::Int { first, last }) => (first, last.map(|l| l + 1 - first)),
            Some(s3s::dto::Range::Suffix { .. }) | None => (0, None),
        };
        self.stats.gets.lock().push(GetRange { key: input.key.clone(), start, len });
    }

    fn observe_got(&self, output: &S3Result<s3s::S3Response<s3s::dto::GetObjectOutput>>) {
        if let Ok(response) = output {
            let len = response.output.content_length.unwrap_or(0).max(0) as u64;
            self.stats.get_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }

    /// Every backend's listings leave the URL encoding a client asks for to this layer.
    fn listed<T: crate::listing::UrlEncodedListing>(&self, output: &mut S3Result<s3s::S3Response<T>>) {
        if let Ok(response) = output {
            response.output.encode_names();
        }
    }

    async fn before(&self, op: &'static str, _bucket: Option<&str>, key: Option<&str>) -> S3Result<InFlight<'_>> {
        let in_flight = self.stats.enter(op);
        match self.faults.take(op, key) {
            Some(FaultAction::Error { status }) => return Err(injected_error(status)),
            Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        Ok(in_flight)
    }
}

fn injected_error(status: u16) -> S3Error {
    let code = match status {
        400 => S3ErrorCode::InvalidRequest,
        403 => S3ErrorCode::AccessDenied,
        404 => S3ErrorCode::NoSuchKey,
        409 => S3ErrorCode::OperationAborted,
        412 => S3ErrorCode::PreconditionFailed,
        416 => S3ErrorCode::InvalidRange,
        500 => S3ErrorCode::InternalError,
        501 => S3ErrorCode::NotImplemented,
        503 => S3ErrorCode::SlowDown,
        _ => S3ErrorCode::Custom("InjectedFault".into()),
    };
    let mut err = S3Error::with_message(code, "injected by xosfs-testserver");
    err.set_status_code(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR));
    err
}

delegate_s3!([impl<S: S3> S3 for Instrumented<S>]);
