//! S3's `encoding-type=url` for listings. The backends (s3s-fs and the in-memory store)
//! echo the encoding type a client asks for but return keys as they are, so a client
//! decodes them once too often: `a+b` is listed as `a b`, `%20` as ` `. The server encodes
//! what they list, as S3 does (a form's encoding: a space is `+`).

use s3s::dto::{EncodingType, ListObjectsOutput, ListObjectsV2Output};

/// A listing whose names are URL-encoded when its client asked for that.
pub trait UrlEncodedListing {
    fn encode_names(&mut self);
}

fn asked(encoding: &Option<EncodingType>) -> bool {
    encoding.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn encode(name: &mut Option<String>) {
    if let Some(name) = name {
        *name = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    }
}

macro_rules! encode_listing {
    ($output:ty, $($field:ident),*) => {
        impl UrlEncodedListing for $output {
            fn encode_names(&mut self) {
                if !asked(&self.encoding_type) {
                    return;
                }
                for object in self.contents.iter_mut().flatten() {
                    encode(&mut object.key);
                }
                for prefix in self.common_prefixes.iter_mut().flatten() {
                    encode(&mut prefix.prefix);
                }
                $(encode(&mut self.$field);)*
            }
        }
    };
}

encode_listing!(ListObjectsOutput, prefix, delimiter, marker, next_marker);
encode_listing!(ListObjectsV2Output, prefix, delimiter, start_after);
