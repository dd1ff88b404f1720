//! The store's error: a kind the core decides on (is the key missing? may the request be
//! tried again?) and the context a log line needs to be acted on: the operation, the key,
//! the HTTP status, the service's code and message, and its request id.

use std::fmt;

/// What went wrong, as far as a caller must tell cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key does not exist (404 NoSuchKey), or an upload id is unknown (NoSuchUpload).
    NotFound,
    /// The bucket itself is missing (404 NoSuchBucket, or 404 on HeadBucket).
    NoSuchBucket,
    /// 403: wrong keys, a bad signature or a policy that refuses the request.
    AccessDenied,
    /// 412: the object is not the version the request was conditioned on.
    PreconditionFailed,
    /// 416: the range starts at or past the end of the object.
    InvalidRange,
    /// 503 SlowDown, 429 and the like: the store asks the client to slow down.
    Throttled,
    /// Any other 5xx: the store failed this time.
    ServerError,
    /// Any other 4xx: the store refused the request as it is.
    Rejected,
    /// Connect or read timeout.
    Timeout,
    /// The endpoint could not be reached: DNS, refused connection, TLS.
    Unreachable,
    /// The connection broke mid-request or mid-body (reset, cut short).
    Interrupted,
    /// A reply that cannot be used, or a request that could not be built.
    Malformed,
    /// 409 BucketAlreadyExists or BucketAlreadyOwnedByYou: the bucket to create exists.
    AlreadyExists,
    /// 409 BucketNotEmpty: the bucket to delete holds objects, versions or uploads.
    NotEmpty,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::NoSuchBucket => "no such bucket",
            ErrorKind::AccessDenied => "access denied",
            ErrorKind::PreconditionFailed => "precondition failed: the object changed",
            ErrorKind::InvalidRange => "range not satisfiable",
            ErrorKind::Throttled => "throttled",
            ErrorKind::ServerError => "server error",
            ErrorKind::Rejected => "refused",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unreachable => "cannot reach the endpoint",
            ErrorKind::Interrupted => "connection interrupted",
            ErrorKind::Malformed => "unusable reply",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotEmpty => "not empty",
        }
    }
}

/// One failed store request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectError {
    pub kind: ErrorKind,
    /// The S3 operation (`GetObject`, `UploadPart`, ...).
    pub op: &'static str,
    /// The key (or prefix, for listings); empty for bucket-wide requests.
    pub key: String,
    pub status: Option<u16>,
    /// The service's error code (`SlowDown`, `NoSuchKey`, ...).
    pub code: Option<String>,
    /// The service's message, or what failed on this side.
    pub message: String,
    pub request_id: Option<String>,
}

impl ObjectError {
    pub fn new(kind: ErrorKind, op: &'static str, key: impl Into<String>) -> ObjectError {
        ObjectError { kind, op, key: key.into(), status: None, code: None, message: String::new(), request_id: None }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ObjectError {
        self.message = message.into();
        self
    }

    pub fn with_status(mut self, status: u16) -> ObjectError {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> ObjectError {
        self.code = Some(code.into());
        self
    }

    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }

    /// Whether the same request may succeed if sent again: throttling, server errors,
    /// timeouts, unreachable endpoints and broken connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled
                | ErrorKind::ServerError
                | ErrorKind::Timeout
                | ErrorKind::Unreachable
                | ErrorKind::Interrupted
        )
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if !self.key.is_empty() {
            write!(f, " {}", self.key)?;
        }
        write!(f, ": {}", self.kind.describe())?;
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s} {c})")?,
            (Some(s), None) => write!(f, " (HTTP {s})")?,
            (None, Some(c)) => write!(f, " ({c})")?,
            (None, None) => {}
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ObjectError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_error_names_operation_key_status_code_and_request_id() {
        let mut e = ObjectError::new(ErrorKind::Throttled, "UploadPart", "videos/a.mp4")
            .with_status(503)
            .with_code("SlowDown")
            .with_message("Please reduce your request rate.");
        e.request_id = Some("req-1".into());
        assert_eq!(
            e.to_string(),
            "UploadPart videos/a.mp4: throttled (HTTP 503 SlowDown): Please reduce your request rate. [request id req-1]"
        );
        assert!(e.is_transient());
        assert!(!ObjectError::new(ErrorKind::NotFound, "HeadObject", "k").is_transient());
    }
}
