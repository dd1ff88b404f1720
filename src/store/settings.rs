//! The text forms of what XOS keeps beside an object's bytes (tags, canned ACLs) and of a
//! bucket's settings, and the limits checked before any request is sent.
//!
//! Bucket settings as text: versioning `Enabled` or `Suspended`; the policy as its JSON
//! document; CORS as `{"CORSRules": [...]}` and lifecycle as `{"Rules": [...]}`, the JSON
//! the vendor's guide passes to boto3 (the same field names); the ACL as a canned name.

use serde::{Deserialize, Serialize};

use super::Tags;

/// The canned ACLs XOS knows, for objects and buckets.
pub const CANNED_ACLS: [&str; 4] = ["private", "public-read", "public-read-write", "authenticated-read"];
/// What an ACL whose grants match no canned ACL reads as.
pub const CUSTOM_ACL: &str = "custom";

/// XOS's limits on an object's tags.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketSetting {
    Versioning,
    Policy,
    Cors,
    Lifecycle,
    Acl,
}

impl BucketSetting {
    pub const ALL: [BucketSetting; 5] = [
        BucketSetting::Versioning,
        BucketSetting::Policy,
        BucketSetting::Cors,
        BucketSetting::Lifecycle,
        BucketSetting::Acl,
    ];

    /// Its name in `user.xos.bucket.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            BucketSetting::Versioning => "versioning",
            BucketSetting::Policy => "policy",
            BucketSetting::Cors => "cors",
            BucketSetting::Lifecycle => "lifecycle",
            BucketSetting::Acl => "acl",
        }
    }

    pub fn from_name(name: &str) -> Option<BucketSetting> {
        BucketSetting::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A value the store would refuse, found before asking it: which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// More tags than XOS keeps.
    #[error("{0} tags: XOS keeps at most {MAX_TAGS} per object")]
    TooManyTags(usize),
    #[error("{0}")]
    Value(String),
}

/// Tags as `k1=v1&k2=v2`, each key and value URL-encoded.
pub fn format_tags(tags: &Tags) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(tags).finish()
}

/// Tags from their `k1=v1&k2=v2` form (empty: none), within XOS's limits.
pub fn parse_tags(text: &str) -> Result<Tags, Invalid> {
    let tags: Tags = url::form_urlencoded::parse(text.trim().as_bytes()).into_owned().collect();
    if tags.len() > MAX_TAGS {
        return Err(Invalid::TooManyTags(tags.len()));
    }
    for (key, value) in &tags {
        if key.is_empty() || key.len() > MAX_TAG_KEY {
            return Err(Invalid::Value(format!("tag key {key:?}: XOS takes keys of 1 to {MAX_TAG_KEY} bytes")));
        }
        if value.len() > MAX_TAG_VALUE {
            return Err(Invalid::Value(format!("tag {key:?}: XOS takes values of up to {MAX_TAG_VALUE} bytes")));
        }
    }
    let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if let Some(twice) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(Invalid::Value(format!("tag key {:?} given twice", twice[0])));
    }
    Ok(tags)
}

/// A canned ACL name, or why it is not one.
pub fn parse_canned_acl(text: &str) -> Result<&'static str, Invalid> {
    let text = text.trim();
    CANNED_ACLS
        .into_iter()
        .find(|c| *c == text)
        .ok_or_else(|| Invalid::Value(format!("{text:?} is not a canned ACL ({})", CANNED_ACLS.join(", "))))
}

/// The CORS configuration, as the guide's `put_bucket_cors` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    #[serde(rename = "CORSRules")]
    pub rules: Vec<CorsRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CorsRule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// The lifecycle configuration, with the rule fields of the guide's
/// `put_bucket_lifecycle_configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Lifecycle {
    pub rules: Vec<LifecycleRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LifecycleRule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Enabled` or `Disabled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<LifecycleFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Days>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortAfter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LifecycleFilter {
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Days {
    pub days: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Transition {
    pub days: i32,
    pub storage_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AbortAfter {
    pub days_after_initiation: i32,
}

/// At most 1000 lifecycle rules (the guide) and 100 CORS rules (S3).
const MAX_LIFECYCLE_RULES: usize = 1000;
const MAX_CORS_RULES: usize = 100;

pub fn parse_cors(text: &str) -> Result<Cors, Invalid> {
    parse_rules("CORS configuration", text, MAX_CORS_RULES, |c: &Cors| c.rules.len())
}

pub fn parse_lifecycle(text: &str) -> Result<Lifecycle, Invalid> {
    let lifecycle = parse_rules("lifecycle configuration", text, MAX_LIFECYCLE_RULES, |l: &Lifecycle| l.rules.len())?;
    if let Some(rule) = lifecycle.rules.iter().find(|r| r.status != "Enabled" && r.status != "Disabled") {
        return Err(Invalid::Value(format!("lifecycle rule Status {:?}: Enabled or Disabled", rule.status)));
    }
    Ok(lifecycle)
}

/// A configuration of 1 to `max` rules from its JSON.
fn parse_rules<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
    max: usize,
    rules: impl Fn(&T) -> usize,
) -> Result<T, Invalid> {
    let parsed: T = serde_json::from_str(text).map_err(|e| Invalid::Value(format!("{what}: {e}")))?;
    let n = rules(&parsed);
    if n == 0 || n > max {
        return Err(Invalid::Value(format!("{what}: 1 to {max} rules, not {n}")));
    }
    Ok(parsed)
}

/// Checks `value` for `which` as far as can be done here; returns it in its stored form.
pub fn validate(which: BucketSetting, value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    match which {
        BucketSetting::Versioning => match value {
            "Enabled" | "Suspended" => Ok(value.to_string()),
            other => Err(Invalid::Value(format!("versioning {other:?}: Enabled or Suspended"))),
        },
        BucketSetting::Policy => {
            let doc: serde_json::Value =
                serde_json::from_str(value).map_err(|e| Invalid::Value(format!("bucket policy: {e}")))?;
            if !doc.is_object() {
                return Err(Invalid::Value("bucket policy: a JSON object".into()));
            }
            Ok(value.to_string())
        }
        BucketSetting::Cors => Ok(to_json(&parse_cors(value)?)),
        BucketSetting::Lifecycle => Ok(to_json(&parse_lifecycle(value)?)),
        BucketSetting::Acl => Ok(parse_canned_acl(value)?.to_string()),
    }
}

pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("settings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_url_encoded_and_limits_are_checked() {
        let tags: Tags = vec![("project".into(), "a b&c".into()), ("ü".into(), "=".into())];
        let text = format_tags(&tags);
        assert_eq!(text, "project=a+b%26c&%C3%BC=%3D");
        assert_eq!(parse_tags(&text).unwrap(), tags);
        assert_eq!(parse_tags("").unwrap(), Tags::new());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tags(&eleven.join("&")), Err(Invalid::TooManyTags(11)));
        assert!(parse_tags(&format!("{}=v", "k".repeat(129))).is_err());
        assert!(parse_tags(&format!("k={}", "v".repeat(257))).is_err());
        assert!(parse_tags(&format!("{}={}", "k".repeat(128), "v".repeat(256))).is_ok());
        assert!(parse_tags("a=1&a=2").is_err());
        assert!(parse_tags("=v").is_err());
    }

    #[test]
    fn settings_are_checked_and_normalized() {
        assert_eq!(validate(BucketSetting::Versioning, "Enabled\n").unwrap(), "Enabled");
        assert!(validate(BucketSetting::Versioning, "on").is_err());
        assert!(validate(BucketSetting::Policy, "{not json").is_err());
        assert!(validate(BucketSetting::Acl, "public").is_err());
        let cors = r#"{"CORSRules":[{"AllowedMethods":["GET"],"AllowedOrigins":["*"],"MaxAgeSeconds":3600}]}"#;
        assert_eq!(validate(BucketSetting::Cors, cors).unwrap(), cors);
        assert!(validate(BucketSetting::Cors, r#"{"CORSRules":[{"AllowedMethods":["GET"]}]}"#).is_err());
        let rules = r#"{"Rules":[{"ID":"t","Status":"Enabled","Filter":{"Prefix":"documents/"},"Expiration":{"Days":3650},"Transitions":[{"Days":365,"StorageClass":"GLACIER"}],"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":7}}]}"#;
        assert_eq!(validate(BucketSetting::Lifecycle, rules).unwrap(), rules);
        assert!(validate(BucketSetting::Lifecycle, r#"{"Rules":[{"Status":"On"}]}"#).is_err());
        assert!(validate(BucketSetting::Lifecycle, r#"{"Rules":[{"Status":"Enabled","Bogus":1}]}"#).is_err());
    }
}
