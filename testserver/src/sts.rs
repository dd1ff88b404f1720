//! STS AssumeRole on the S3 port, and S3 authentication that accepts exactly the temporary
//! credentials it issued, until they expire.
//!
//! The long-term key signs AssumeRole (SigV4, service `sts`, checked by s3s like any
//! request); the answer is STS's XML with a fresh access key, secret key and session
//! token. S3 requests signed with such a key must carry its token in
//! `x-amz-security-token`, and are refused with `ExpiredToken` once it has expired, so a
//! client that does not renew in time fails visibly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use parking_lot::Mutex;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

/// Credentials handed out by AssumeRole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: String,
    pub expires: SystemTime,
}

/// The keys the server knows: the long-term pair and every issued temporary set.
#[derive(Debug)]
pub struct Keys {
    access_key: String,
    secret_key: String,
    /// Lifetime of issued credentials regardless of the DurationSeconds asked for, so tests
    /// can see several expiries; `None` grants what was asked.
    lifetime: Mutex<Option<Duration>>,
    /// Whether S3 refuses the long-term key, as for a user only allowed to assume roles.
    sessions_only: AtomicBool,
    issued: Mutex<HashMap<String, IssuedCredentials>>,
    counter: AtomicU64,
    expired_rejections: AtomicU64,
}

impl Keys {
    pub(crate) fn new(access_key: String, secret_key: String) -> Keys {
        Keys {
            access_key,
            secret_key,
            lifetime: Mutex::new(None),
            sessions_only: AtomicBool::new(false),
            issued: Mutex::default(),
            counter: AtomicU64::new(0),
            expired_rejections: AtomicU64::new(0),
        }
    }

    /// Credentials issued from now on live `lifetime` whatever the client asks for (short,
    /// to test renewal); `None` grants the DurationSeconds asked.
    pub fn set_session_lifetime(&self, lifetime: Option<Duration>) {
        *self.lifetime.lock() = lifetime;
    }

    /// When set, S3 requests must use issued credentials: the long-term key may only call
    /// AssumeRole, so a client that signs S3 requests with it fails.
    pub fn set_sessions_only(&self, on: bool) {
        self.sessions_only.store(on, Ordering::Relaxed);
    }

    /// AssumeRole calls answered with credentials.
    pub fn assume_role_calls(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// S3 requests refused because their session token had expired.
    pub fn expired_rejections(&self) -> u64 {
        self.expired_rejections.load(Ordering::Relaxed)
    }

    /// Every set of credentials issued so far.
    pub fn issued(&self) -> Vec<IssuedCredentials> {
        self.issued.lock().values().cloned().collect()
    }

    fn issue(&self, asked: Duration) -> IssuedCredentials {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        // Distinct per server and per call, so keys of two test servers never match.
        let nonce = format!("{:x}{n:04}", std::ptr::from_ref(self) as usize);
        let creds = IssuedCredentials {
            access_key: format!("ASIATEST{nonce}"),
            secret_key: format!("temp-secret-{nonce}-{}", hex(n)),
            session_token: format!("temp-token-{nonce}-{}", hex(n + 1_000_000)),
            expires: SystemTime::now() + self.lifetime.lock().unwrap_or(asked),
        };
        self.issued.lock().insert(creds.access_key.clone(), creds.clone());
        creds
    }
}

/// s3s authentication: the long-term secret, or an issued one (expiry is checked by
/// [`SessionAccess`], which sees the token and can answer `ExpiredToken`).
pub(crate) struct KeyAuth(pub(crate) std::sync::Arc<Keys>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let keys = &self.0;
        if access_key == keys.access_key {
            return Ok(SecretKey::from(keys.secret_key.as_str()));
        }
        match keys.issued.lock().get(access_key) {
            Some(c) => Ok(SecretKey::from(c.secret_key.as_str())),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// Every S3 request: signed, and with temporary keys only alongside their own, unexpired token.
pub(crate) struct SessionAccess(pub(crate) std::sync::Arc<Keys>);

#[async_trait::async_trait]
impl S3Access for SessionAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(access_key) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let keys = &self.0;
        if access_key == keys.access_key {
            return match keys.sessions_only.load(Ordering::Relaxed) {
                false => Ok(()),
                true => Err(s3_error!(AccessDenied, "this key may only assume roles")),
            };
        }
        let Some(issued) = keys.issued.lock().get(&access_key).cloned() else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        let token = cx.headers().get("x-amz-security-token").and_then(|v| v.to_str().ok());
        if token != Some(issued.session_token.as_str()) {
            return Err(s3_error!(InvalidToken, "The provided token is malformed or otherwise invalid."));
        }
        if SystemTime::now() >= issued.expires {
            keys.expired_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(s3_error!(ExpiredToken, "The provided token has expired."));
        }
        Ok(())
    }
}

/// `POST /` signed for the `sts` service: the AssumeRole action.
pub(crate) struct StsRoute(pub(crate) std::sync::Arc<Keys>);

#[async_trait::async_trait]
impl S3Route for StsRoute {
    fn is_match(&self, method: &Method, uri: &Uri, headers: &HeaderMap, _: &mut http::Extensions) -> bool {
        let signed_for_sts = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("/sts/aws4_request"));
        method == Method::POST && uri.path() == "/" && signed_for_sts
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        // Only the long-term key may assume a role, not a session assumed earlier.
        match &req.credentials {
            Some(c) if c.access_key == self.0.access_key => Ok(()),
            _ => Err(s3_error!(AccessDenied, "AssumeRole needs the long-term key")),
        }
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let body = req
            .input
            .store_all_limited(64 << 10)
            .await
            .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidRequest, e.to_string()))?;
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("Action") != Some("AssumeRole") {
            return Err(s3_error!(NotImplemented, "only AssumeRole is served"));
        }
        let (Some(role_arn), Some(session_name)) = (field("RoleArn"), field("RoleSessionName")) else {
            return Err(s3_error!(InvalidArgument, "RoleArn and RoleSessionName are required"));
        };
        let asked = match field("DurationSeconds") {
            None => Duration::from_secs(3600),
            Some(s) => Duration::from_secs(s.parse().map_err(|_| s3_error!(InvalidArgument, "bad DurationSeconds"))?),
        };
        let c = self.0.issue(asked);
        let expiration = aws_sdk_s3::primitives::DateTime::from(c.expires)
            .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
        let xml = format!(
            r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult>
<AssumedRoleUser><Arn>{arn}/{session}</Arn><AssumedRoleId>AROATEST:{session}</AssumedRoleId></AssumedRoleUser>
<Credentials><AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{sk}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>
</AssumeRoleResult>
<ResponseMetadata><RequestId>sts-{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
            arn = escape(role_arn),
            session = escape(session_name),
            ak = c.access_key,
            sk = c.secret_key,
            token = c.session_token,
            n = self.0.assume_role_calls(),
        );
        let mut resp = S3Response::with_status(Body::from(xml), StatusCode::OK);
        resp.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        Ok(resp)
    }
}

/// 32 hex digits that differ per seed.
fn hex(seed: u64) -> String {
    crate::pseudo_random_bytes(16, seed).iter().map(|b| format!("{b:02x}")).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
