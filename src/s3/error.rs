//! The object-store layer's error: small enough that the filesystem core can decide
//! what each case means for a POSIX caller without knowing about HTTP or the SDK.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_types::request_id::RequestId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    /// The key (404 NoSuchKey) does not exist.
    #[error("not found")]
    NotFound,
    /// The bucket itself is missing (404 NoSuchBucket, or 404 on HeadBucket).
    #[error("no such bucket")]
    NoSuchBucket,
    /// 403: wrong keys, a bad signature or a policy that refuses the request.
    #[error("access denied ({code}){}", request_id_suffix(.request_id))]
    AccessDenied { code: String, request_id: Option<String> },
    /// 412: the object changed since we looked at it (If-Match failed).
    #[error("precondition failed: the object changed")]
    PreconditionFailed,
    /// 416: the range starts at or past the end of the object.
    #[error("range not satisfiable")]
    InvalidRange,
    /// The endpoint could not be reached: DNS, refused connection, TLS.
    #[error("cannot reach the endpoint: {0}")]
    Unreachable(String),
    /// Connect or read timeout after the retries.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Any other answer of the service.
    #[error("{status} {code}: {message}{}", request_id_suffix(.request_id))]
    Service { status: u16, code: String, message: String, request_id: Option<String> },
    /// A reply we could not read, or a request we could not build.
    #[error("{0}")]
    Protocol(String),
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_deref().map(|id| format!(" [request id {id}]")).unwrap_or_default()
}

impl<E> From<SdkError<E, HttpResponse>> for ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or_default().to_string();
                let request_id = se.err().meta().request_id().map(str::to_string);
                match (status, code.as_str()) {
                    (_, "NoSuchBucket") => ObjectError::NoSuchBucket,
                    (404, _) => ObjectError::NotFound,
                    (403, _) => ObjectError::AccessDenied {
                        code: if code.is_empty() { "Forbidden".into() } else { code },
                        request_id,
                    },
                    (412, _) => ObjectError::PreconditionFailed,
                    (416, _) => ObjectError::InvalidRange,
                    _ => ObjectError::Service {
                        status,
                        message: se.err().message().unwrap_or_default().to_string(),
                        code,
                        request_id,
                    },
                }
            }
            SdkError::DispatchFailure(df) => {
                let detail = source_chain(&err);
                if df.is_timeout() {
                    ObjectError::Timeout(detail)
                } else {
                    ObjectError::Unreachable(detail)
                }
            }
            SdkError::TimeoutError(_) => ObjectError::Timeout(source_chain(&err)),
            _ => ObjectError::Protocol(source_chain(&err)),
        }
    }
}

/// The SDK's top-level messages ("dispatch failure: io error: ...") wrap the cause in
/// layers; the innermost error is the one that tells a user what is wrong.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
