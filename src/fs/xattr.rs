//! Extended attributes, stored as s3fs stores them: one user-metadata entry `xattr`
//! holding a percent-encoded JSON object that maps each name to its base64 value. Names
//! under `user.xos.` are not stored: they show what the store knows of the object (xos.rs).

use std::collections::BTreeMap;

use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The user-metadata key (sent as `x-amz-meta-xattr`).
pub const METADATA_KEY: &str = "xattr";
/// All user metadata of an object may take 2 KiB (S3's limit, which XOS shares).
pub const METADATA_LIMIT: usize = 2048;

/// Characters kept as they are in the stored value: JSON punctuation is encoded, so the
/// value is a safe header whatever the names contain.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The attributes in a stored `xattr` value; an unreadable value reads as none (it was
/// not written by s3fs or xosfs) rather than failing every call.
pub fn decode(stored: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let Some(stored) = stored else { return BTreeMap::new() };
    let json = percent_decode_str(stored).decode_utf8_lossy();
    let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(&json) else { return BTreeMap::new() };
    let b64 = base64::engine::general_purpose::STANDARD;
    map.into_iter().filter_map(|(k, v)| b64.decode(v).ok().map(|v| (k, v))).collect()
}

/// The stored form of `attrs`, or `None` when there are none (the entry is removed).
pub fn encode(attrs: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let map: BTreeMap<&str, String> = attrs.iter().map(|(k, v)| (k.as_str(), b64.encode(v))).collect();
    let json = serde_json::to_string(&map).expect("a map of strings serializes");
    Some(utf8_percent_encode(&json, KEEP).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes_and_names() {
        let attrs: BTreeMap<String, Vec<u8>> = [
            ("user.comment".to_string(), b"hello, world".to_vec()),
            ("user.\"odd\" name,{}".to_string(), vec![0, 255, 10, 34]),
            ("user.empty".to_string(), Vec::new()),
        ]
        .into();
        let stored = encode(&attrs).unwrap();
        assert!(stored.is_ascii() && !stored.contains([',', '"', '{', ' ']), "{stored}");
        assert_eq!(decode(Some(&stored)), attrs);
        assert_eq!(encode(&BTreeMap::new()), None);
    }

    #[test]
    fn reads_the_s3fs_form() {
        // {"user.a":"YmFy"} percent-encoded, as s3fs writes it: user.a = "bar".
        let stored = "%7B%22user.a%22%3A%22YmFy%22%7D";
        assert_eq!(decode(Some(stored)), [("user.a".to_string(), b"bar".to_vec())].into());
        assert!(decode(Some("not json")).is_empty());
        assert!(decode(None).is_empty());
    }
}
