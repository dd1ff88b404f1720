//! Replies of S3-compatible stores that differ from S3's where the SDK's strict parser
//! would reject a request that succeeded. Each tolerated deviation is named here and in the
//! README; everything else the SDK parses as it is.
//!
//! - moto answers CompleteMultipartUpload with the root element
//!   `CompleteMultipartUploadResponse` (S3: `CompleteMultipartUploadResult`), so every
//!   upload of more than one part failed after it had been stored;
//! - moto answers GetBucketVersioning of a bucket that never had versioning with an empty
//!   `GetBucketVersioningResponse` (S3: an empty `VersioningConfiguration`).

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

/// Renames a store's root element of a successful reply to S3's. Attached to the one
/// operation whose reply it fixes.
#[derive(Debug, Clone, Copy)]
pub struct RootElement {
    store: &'static str,
    s3: &'static str,
}

impl RootElement {
    pub const COMPLETE_MULTIPART_UPLOAD: RootElement =
        RootElement { store: "CompleteMultipartUploadResponse", s3: "CompleteMultipartUploadResult" };
    pub const GET_BUCKET_VERSIONING: RootElement =
        RootElement { store: "GetBucketVersioningResponse", s3: "VersioningConfiguration" };
}

impl Intercept for RootElement {
    fn name(&self) -> &'static str {
        "RootElement"
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
                SdkBody::from_body_1_x(Renamed { inner: body, received: BytesMut::new(), done: false, root: *self });
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
    root: RootElement,
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
                    let body = this.root.rename(&this.received);
                    return Poll::Ready(Some(Ok(Frame::data(body))));
                }
            }
        }
    }
}

impl RootElement {
    /// `body` with the store's root element (its opening and closing tag) named as S3
    /// names it; any other body as it is.
    fn rename(&self, body: &[u8]) -> Bytes {
        let (store, s3) = (self.store, self.s3);
        match std::str::from_utf8(body) {
            Ok(text) if text.contains(&format!("<{store}")) => {
                Bytes::from(text.replacen(&format!("<{store}"), &format!("<{s3}"), 1).replacen(
                    &format!("</{store}>"),
                    &format!("</{s3}>"),
                    1,
                ))
            }
            _ => Bytes::copy_from_slice(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_root_element_is_renamed_and_others_are_kept() {
        let moto = br#"<?xml version="1.0"?><CompleteMultipartUploadResponse xmlns="x"><ETag>"e-2"</ETag></CompleteMultipartUploadResponse>"#;
        let s3 = r#"<?xml version="1.0"?><CompleteMultipartUploadResult xmlns="x"><ETag>"e-2"</ETag></CompleteMultipartUploadResult>"#;
        let root = RootElement::COMPLETE_MULTIPART_UPLOAD;
        assert_eq!(root.rename(moto), Bytes::from(s3));
        assert_eq!(root.rename(s3.as_bytes()), Bytes::from(s3));
        let empty = br#"<?xml version="1.0"?><GetBucketVersioningResponse xmlns="x"/>"#;
        let renamed = RootElement::GET_BUCKET_VERSIONING.rename(empty);
        assert_eq!(renamed, Bytes::from(r#"<?xml version="1.0"?><VersioningConfiguration xmlns="x"/>"#));
    }
}
