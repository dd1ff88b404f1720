//! The store's text forms of ACLs and bucket settings ([`crate::store::settings`]) to and
//! from the SDK's types.

use aws_sdk_s3::types::{self as sdk, Grant, Permission};

use crate::store::settings::{
    AbortAfter, Cors, CorsRule, Days, Lifecycle, LifecycleFilter, LifecycleRule, Transition, CUSTOM_ACL,
};

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// The canned ACL these grants amount to: the owner's FULL_CONTROL plus exactly the
/// group grants the canned ACL adds, else `custom`.
pub fn canned_acl(owner: Option<&str>, grants: &[Grant]) -> String {
    let mut owner_full = false;
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for grant in grants {
        let (Some(grantee), Some(permission)) = (grant.grantee(), grant.permission()) else {
            return CUSTOM_ACL.into();
        };
        match (grantee.id(), grantee.uri()) {
            (Some(id), _) if Some(id) == owner && *permission == Permission::FullControl => owner_full = true,
            (_, Some(ALL_USERS)) => groups.push(("all", permission.as_str())),
            (_, Some(AUTHENTICATED_USERS)) => groups.push(("authenticated", permission.as_str())),
            _ => return CUSTOM_ACL.into(),
        }
    }
    groups.sort_unstable();
    let canned = match groups.as_slice() {
        [] => "private",
        [("all", "READ")] => "public-read",
        [("all", "READ"), ("all", "WRITE")] => "public-read-write",
        [("authenticated", "READ")] => "authenticated-read",
        _ => CUSTOM_ACL,
    };
    if owner_full {
        canned.into()
    } else {
        CUSTOM_ACL.into()
    }
}

pub fn cors_to_sdk(cors: &Cors) -> Result<sdk::CorsConfiguration, String> {
    let rules = cors
        .rules
        .iter()
        .map(|r| {
            sdk::CorsRule::builder()
                .set_id(r.id.clone())
                .set_allowed_methods(Some(r.allowed_methods.clone()))
                .set_allowed_origins(Some(r.allowed_origins.clone()))
                .set_allowed_headers((!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()))
                .set_expose_headers((!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()))
                .set_max_age_seconds(r.max_age_seconds)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    sdk::CorsConfiguration::builder().set_cors_rules(Some(rules)).build().map_err(|e| e.to_string())
}

pub fn cors_from_sdk(rules: &[sdk::CorsRule]) -> Cors {
    Cors {
        rules: rules
            .iter()
            .map(|r| CorsRule {
                id: r.id().map(str::to_string),
                allowed_methods: r.allowed_methods().to_vec(),
                allowed_origins: r.allowed_origins().to_vec(),
                allowed_headers: r.allowed_headers().to_vec(),
                expose_headers: r.expose_headers().to_vec(),
                max_age_seconds: r.max_age_seconds(),
            })
            .collect(),
    }
}

pub fn lifecycle_to_sdk(lifecycle: &Lifecycle) -> Result<sdk::BucketLifecycleConfiguration, String> {
    let rules = lifecycle
        .rules
        .iter()
        .map(|r| {
            let transitions = r
                .transitions
                .iter()
                .map(|t| sdk::Transition::builder().days(t.days).storage_class(t.storage_class.as_str().into()).build())
                .collect::<Vec<_>>();
            sdk::LifecycleRule::builder()
                .set_id(r.id.clone())
                .status(r.status.as_str().into())
                // S3 wants a filter on every rule; an empty prefix is the whole bucket.
                .filter(
                    sdk::LifecycleRuleFilter::builder()
                        .prefix(r.filter.as_ref().map(|f| f.prefix.clone()).unwrap_or_default())
                        .build(),
                )
                .set_expiration(r.expiration.as_ref().map(|e| sdk::LifecycleExpiration::builder().days(e.days).build()))
                .set_transitions((!transitions.is_empty()).then_some(transitions))
                .set_abort_incomplete_multipart_upload(r.abort_incomplete_multipart_upload.as_ref().map(|a| {
                    sdk::AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(a.days_after_initiation)
                        .build()
                }))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    sdk::BucketLifecycleConfiguration::builder().set_rules(Some(rules)).build().map_err(|e| e.to_string())
}

pub fn lifecycle_from_sdk(rules: &[sdk::LifecycleRule]) -> Lifecycle {
    Lifecycle {
        rules: rules
            .iter()
            .map(|r| LifecycleRule {
                id: r.id().map(str::to_string),
                status: r.status().as_str().to_string(),
                filter: r.filter().and_then(|f| f.prefix()).map(|p| LifecycleFilter { prefix: p.to_string() }),
                expiration: r.expiration().and_then(|e| e.days()).map(|days| Days { days }),
                transitions: r
                    .transitions()
                    .iter()
                    .filter_map(|t| {
                        Some(Transition { days: t.days()?, storage_class: t.storage_class()?.as_str().to_string() })
                    })
                    .collect(),
                abort_incomplete_multipart_upload: r
                    .abort_incomplete_multipart_upload()
                    .and_then(|a| a.days_after_initiation())
                    .map(|days_after_initiation| AbortAfter { days_after_initiation }),
            })
            .collect(),
    }
}
