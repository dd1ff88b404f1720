//! Replies of S3-compatible stores that differ from S3's where the SDK's strict parser
//! would reject a request that succeeded. Each tolerated deviation is named here and in the
//! README; everything else the SDK parses as it is.
//!
//! - moto answers CompleteMultipartUpload with the root element
//!   `CompleteMultipartUploadResponse` (S3: `CompleteMultipartUploadResult`), so every
//!   upload of more than one part failed after it had been stored.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};

const MOTO_ROOT: &str = "CompleteMultipartUploadResponse";
const S3_ROOT: &str = "CompleteMultipartUploadResult";

/// Renames moto's root element of a successful CompleteMultipartUpload reply to S3's.
/// Attached to that operation only.
#[derive(Debug)]
pub struct CompletionRootElement;

impl Intercept for CompletionRootElement {
    fn name(&self) -> &'static str {
        "CompletionRootElement"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        // Errors have their own root element, which the SDK reads whatever the store.
        if response.status().is_success() {
            let body = response.take_body();
            *response.body_mut() =
                SdkBody::from_body_1_x(Renamed { inner: body, received: BytesMut::new(), done: false });
        }
        Ok(())
    }
}

/// The whole body (a completion reply is small), then the same bytes with the root
/// element renamed, as one frame.
struct Renamed {
    inner: SdkBody,
    received: BytesMut,
    done: bool,
}

impl Body for Renamed {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.received.extend_from_slice(data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let body = rename_root(&this.received);
                    return Poll::Ready(Some(Ok(Frame::data(body))));
                }
            }
        }
    }
}

/// `body` with moto's root element (its opening and closing tag) named as S3 names it.
fn rename_root(body: &[u8]) -> Bytes {
    match std::str::from_utf8(body) {
        Ok(text) if text.contains(MOTO_ROOT) => {
            Bytes::from(text.replacen(&format!("<{MOTO_ROOT}"), &format!("<{S3_ROOT}"), 1).replacen(
                &format!("</{MOTO_ROOT}>"),
                &format!("</{S3_ROOT}>"),
                1,
            ))
        }
        _ => Bytes::copy_from_slice(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_root_element_is_renamed_and_others_are_kept() {
        let moto = br#"<?xml version="1.0"?><CompleteMultipartUploadResponse xmlns="x"><ETag>"e-2"</ETag></CompleteMultipartUploadResponse>"#;
        let s3 = r#"<?xml version="1.0"?><CompleteMultipartUploadResult xmlns="x"><ETag>"e-2"</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(rename_root(moto), Bytes::from(s3));
        assert_eq!(rename_root(s3.as_bytes()), Bytes::from(s3));
    }
}
