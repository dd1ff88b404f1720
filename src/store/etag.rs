//! ETags as S3 computes them (for objects stored without server-side encryption by KMS):
//! the MD5 of a body stored with one PUT, and the MD5 of the part digests, dashed with
//! the part count, for a multipart upload. A client that knows what it sent can tell
//! whether an object is its own write (a reply lost, the request applied).

use md5::{Digest, Md5};

use super::CompletedPart;

pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn quoted_etag(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex(md5))
}

/// The ETag of `body` stored with one PUT.
pub fn put_etag(body: &[u8]) -> String {
    quoted_etag(&md5(body))
}

/// The ETag CompleteMultipartUpload gives `parts`; `None` when a part's ETag is not an
/// MD5 (then nothing can be told from it).
pub fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    let mut digests = Vec::with_capacity(parts.len() * 16);
    for part in parts {
        let hex = part.etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        for i in (0..32).step_by(2) {
            digests.push(u8::from_str_radix(&hex[i..i + 2], 16).ok()?);
        }
    }
    Some(format!("\"{}-{}\"", self::hex(&md5(&digests)), parts.len()))
}

/// Whether two ETags name the same version; either may come with or without quotes.
pub fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_etag_is_the_md5_of_the_part_digests() {
        let parts =
            [CompletedPart { number: 1, etag: put_etag(b"one") }, CompletedPart { number: 2, etag: put_etag(b"two") }];
        let mut digests = md5(b"one").to_vec();
        digests.extend_from_slice(&md5(b"two"));
        assert_eq!(multipart_etag(&parts), Some(format!("\"{}-2\"", hex(&md5(&digests)))));
        assert_eq!(multipart_etag(&[CompletedPart { number: 1, etag: "\"opaque\"".into() }]), None);
        assert!(same_etag("\"ab\"", "ab"));
    }
}
