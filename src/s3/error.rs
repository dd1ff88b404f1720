//! The SDK's errors as the store's [`ObjectError`], with the operation, key, HTTP status,
//! error code, message and request id that a log line needs.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::store::{ErrorKind, ObjectError};

pub fn sdk_error<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let meta = se.err().meta();
            let code = meta.code().unwrap_or_default();
            let kind = match (status, code) {
                (_, "NoSuchBucket") => ErrorKind::NoSuchBucket,
                (404, _) => ErrorKind::NotFound,
                (403, _) => ErrorKind::AccessDenied,
                // 409 ConditionalRequestConflict: a conditional write raced another write.
                (412, _) | (409, "ConditionalRequestConflict") => ErrorKind::PreconditionFailed,
                (416, _) => ErrorKind::InvalidRange,
                (_, "BucketAlreadyExists" | "BucketAlreadyOwnedByYou") => ErrorKind::AlreadyExists,
                (_, "BucketNotEmpty") => ErrorKind::NotEmpty,
                // A feature the store lacks: asking again will not add it.
                (501, _) | (_, "NotImplemented") => ErrorKind::Rejected,
                (429 | 503, _) | (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
                    ErrorKind::Throttled
                }
                (500..=599, _) | (_, "InternalError") => ErrorKind::ServerError,
                // S3 answers 400 RequestTimeout when a request body stalled: send it again.
                (_, "RequestTimeout") => ErrorKind::Timeout,
                _ => ErrorKind::Rejected,
            };
            let mut e = ObjectError::new(kind, op, key)
                .with_status(status)
                .with_message(meta.message().unwrap_or_default().to_string());
            if !code.is_empty() {
                e = e.with_code(code);
            }
            e.request_id = meta.extra("request_id").or_else(|| request_id_header(se.raw())).map(str::to_string);
            e
        }
        SdkError::DispatchFailure(df) => {
            let kind = if df.is_timeout() {
                ErrorKind::Timeout
            } else if df.is_io() {
                // The request may have reached the store: a reset, not a refusal.
                ErrorKind::Interrupted
            } else {
                ErrorKind::Unreachable
            };
            ObjectError::new(kind, op, key).with_message(innermost(&err))
        }
        SdkError::TimeoutError(_) => ObjectError::new(ErrorKind::Timeout, op, key).with_message(innermost(&err)),
        // A reply that is not what S3 sends: sending the request again would not help.
        SdkError::ResponseError(re) => {
            let mut e = malformed(op, key, innermost(&err));
            e.status = Some(re.raw().status().as_u16());
            e.request_id = request_id_header(re.raw()).map(str::to_string);
            e
        }
        _ => malformed(op, key, innermost(&err)),
    }
}

fn request_id_header(raw: &HttpResponse) -> Option<&str> {
    raw.headers().get("x-amz-request-id")
}

pub fn malformed(op: &'static str, key: &str, why: impl Into<String>) -> ObjectError {
    ObjectError::new(ErrorKind::Malformed, op, key).with_message(why)
}

/// The SDK's top-level messages ("dispatch failure: io error: ...") wrap the cause in
/// layers; the innermost error is the one that tells a user what is wrong.
pub fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
