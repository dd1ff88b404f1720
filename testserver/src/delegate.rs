//! One list of the S3 operations the test servers support, expanded into forwarding `S3`
//! impls for the wrapper layers, so adding an operation is a one-line change.

/// `(bucket, key)` of a request, for layers that act on particular objects. List operations
/// report their prefix as the key, so a fault can target one listing.
macro_rules! op_target {
    (key, $input:expr) => {
        (Some($input.bucket.as_str()), Some($input.key.as_str()))
    };
    (get, $input:expr) => {
        (Some($input.bucket.as_str()), Some($input.key.as_str()))
    };
    (prefix, $input:expr) => {
        (Some($input.bucket.as_str()), $input.prefix.as_deref())
    };
    (listing, $input:expr) => {
        (Some($input.bucket.as_str()), $input.prefix.as_deref())
    };
    (bucket, $input:expr) => {
        (Some($input.bucket.as_str()), None)
    };
    (none, $input:expr) => {
        (None, None)
    };
}

/// Lets a wrapper see a GET's range: it calls `self.observe_get(&GetObjectInput)`.
macro_rules! op_observe {
    (get, $self:ident, $input:expr) => {
        $self.observe_get(&$input)
    };
    ($other:ident, $self:ident, $input:expr) => {};
}

/// Lets a wrapper see a GET's answer (`self.observe_got(&S3Result<..>)`) and change a
/// listing's (`self.listed(&mut S3Result<..>)`).
macro_rules! op_observe_output {
    (get, $self:ident, $output:expr) => {
        $self.observe_got(&$output)
    };
    (listing, $self:ident, $output:expr) => {
        $self.listed(&mut $output)
    };
    ($other:ident, $self:ident, $output:expr) => {};
}

/// Implements `S3` for a wrapper with a field `inner: impl S3` and a method
/// `async fn before(&self, op: &'static str, bucket: Option<&str>, key: Option<&str>) -> S3Result<G>`:
/// every listed operation first awaits `before` (whose guard lives until the inner call
/// returns), then forwards. Unlisted operations answer NotImplemented.
macro_rules! delegate_s3 {
    ([$($header:tt)*]) => {
        delegate_s3! { @impl [$($header)*]
            (create_bucket, "CreateBucket", CreateBucketInput, CreateBucketOutput, bucket),
            (delete_bucket, "DeleteBucket", DeleteBucketInput, DeleteBucketOutput, bucket),
            (head_bucket, "HeadBucket", HeadBucketInput, HeadBucketOutput, bucket),
            (get_bucket_location, "GetBucketLocation", GetBucketLocationInput, GetBucketLocationOutput, bucket),
            (list_buckets, "ListBuckets", ListBucketsInput, ListBucketsOutput, none),
            (list_objects, "ListObjects", ListObjectsInput, ListObjectsOutput, listing),
            (list_objects_v2, "ListObjectsV2", ListObjectsV2Input, ListObjectsV2Output, listing),
            (head_object, "HeadObject", HeadObjectInput, HeadObjectOutput, key),
            (get_object, "GetObject", GetObjectInput, GetObjectOutput, get),
            (put_object, "PutObject", PutObjectInput, PutObjectOutput, key),
            (delete_object, "DeleteObject", DeleteObjectInput, DeleteObjectOutput, key),
            (delete_objects, "DeleteObjects", DeleteObjectsInput, DeleteObjectsOutput, bucket),
            (copy_object, "CopyObject", CopyObjectInput, CopyObjectOutput, key),
            (get_object_tagging, "GetObjectTagging", GetObjectTaggingInput, GetObjectTaggingOutput, key),
            (put_object_tagging, "PutObjectTagging", PutObjectTaggingInput, PutObjectTaggingOutput, key),
            (create_multipart_upload, "CreateMultipartUpload", CreateMultipartUploadInput, CreateMultipartUploadOutput, key),
            (upload_part, "UploadPart", UploadPartInput, UploadPartOutput, key),
            (upload_part_copy, "UploadPartCopy", UploadPartCopyInput, UploadPartCopyOutput, key),
            (complete_multipart_upload, "CompleteMultipartUpload", CompleteMultipartUploadInput, CompleteMultipartUploadOutput, key),
            (abort_multipart_upload, "AbortMultipartUpload", AbortMultipartUploadInput, AbortMultipartUploadOutput, key),
            (list_multipart_uploads, "ListMultipartUploads", ListMultipartUploadsInput, ListMultipartUploadsOutput, prefix),
            (list_parts, "ListParts", ListPartsInput, ListPartsOutput, key),
        }
    };
    (@impl [$($header:tt)*] $(($method:ident, $op:literal, $input:ident, $output:ident, $target:ident)),* $(,)?) => {
        #[async_trait::async_trait]
        $($header)* {
            $(
                async fn $method(
                    &self,
                    req: ::s3s::S3Request<::s3s::dto::$input>,
                ) -> ::s3s::S3Result<::s3s::S3Response<::s3s::dto::$output>> {
                    let _guard = {
                        let (bucket, key) = op_target!($target, req.input);
                        op_observe!($target, self, req.input);
                        self.before($op, bucket, key).await?
                    };
                    #[allow(unused_mut)] // changed by listings' wrappers only
                    let mut output = self.inner.$method(req).await;
                    op_observe_output!($target, self, output);
                    output
                }
            )*
        }
    };
}
