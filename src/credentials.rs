//! Where the keys come from: an s3fs-style password file (`--passwd-file`,
//! `$XOSFS_PASSWD_FILE`, `~/.passwd-xosfs`, `/etc/passwd-xosfs`, the first that applies), else
//! the AWS environment variables and shared profile files (which also carry session
//! tokens). Instance-metadata lookups are deliberately left out of the chain: XOS is not
//! EC2, and probing 169.254.169.254 only delays a clear "no credentials" error.
//!
//! With a role, those keys only sign STS AssumeRole, and requests use the role's temporary
//! credentials, which the S3 client's credential cache renews before they expire.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_credential_types::provider::{self, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::config::S3Config;

/// Where to look for keys, and whether to assume a role with them.
#[derive(Debug, Clone, Default)]
pub struct CredentialsConfig {
    /// `--passwd-file`: looked at first, and an error when it cannot be used.
    pub passwd_file: Option<PathBuf>,
    pub role: Option<RoleConfig>,
}

/// STS AssumeRole settings (`--role-arn` and friends), validated.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub arn: String,
    pub sts_endpoint: String,
    pub session_name: String,
    pub duration: Duration,
    pub policy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read password file {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("password file {path} is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("password file {path} has no ACCESS_KEY:SECRET_KEY line for bucket '{bucket}'")]
    NoEntry { path: PathBuf, bucket: String },
    #[error("password file {path}, line {line}: expected ACCESS_KEY:SECRET_KEY or BUCKET:ACCESS_KEY:SECRET_KEY")]
    Malformed { path: PathBuf, line: usize },
    #[error("no credentials found: pass --passwd-file, create ~/.passwd-xosfs or /etc/passwd-xosfs, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure an AWS profile ({0})")]
    NotFound(String),
    #[error("cannot assume role {arn} at {endpoint}: {reason}")]
    AssumeRole { arn: String, endpoint: String, reason: String },
}

/// The provider for this bucket: the keys found, or a role assumed with them. Resolved once
/// here, so that missing keys or a refused role are start-up errors, not EIO on first access.
pub async fn provider(cfg: &CredentialsConfig, s3: &S3Config) -> Result<SharedCredentialsProvider, CredentialsError> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let env_file = std::env::var_os("XOSFS_PASSWD_FILE").filter(|f| !f.is_empty()).map(PathBuf::from);
    let found =
        find_passwd_entry(cfg.passwd_file.as_deref(), env_file, home, Path::new(SYSTEM_PASSWD_FILE), &s3.bucket)?;
    let base = match found {
        Some(credentials) => SharedCredentialsProvider::new(credentials),
        None => SharedCredentialsProvider::new(
            CredentialsProviderChain::first_try("environment", EnvironmentVariableCredentialsProvider::new())
                .or_else("profile", ProfileFileCredentialsProvider::builder().build()),
        ),
    };
    base.provide_credentials().await.map_err(|e| CredentialsError::NotFound(innermost(&e)))?;
    let Some(role) = &cfg.role else { return Ok(base) };
    let assumed = SharedCredentialsProvider::new(AssumeRole::new(role, s3, base));
    assumed.provide_credentials().await.map_err(|e| CredentialsError::AssumeRole {
        arn: role.arn.clone(),
        endpoint: role.sts_endpoint.clone(),
        reason: innermost(&e),
    })?;
    Ok(assumed)
}

const SYSTEM_PASSWD_FILE: &str = "/etc/passwd-xosfs";

/// The keys of the first password file that applies: the named ones (flag, then
/// environment) must be usable; `~/.passwd-xosfs` and `/etc/passwd-xosfs` are skipped when
/// missing, unreadable by this user or without a line for the bucket, but a file open to
/// others or malformed is still an error, never silently passed over.
fn find_passwd_entry(
    flag: Option<&Path>,
    env_file: Option<PathBuf>,
    home: Option<PathBuf>,
    system: &Path,
    bucket: &str,
) -> Result<Option<Credentials>, CredentialsError> {
    if let Some(path) = flag.map(Path::to_path_buf).or(env_file) {
        return read_passwd_file(&path, bucket).map(Some);
    }
    let defaults = home.map(|h| h.join(".passwd-xosfs")).into_iter().chain([system.to_path_buf()]);
    for path in defaults {
        match read_passwd_file(&path, bucket) {
            Ok(c) => return Ok(Some(c)),
            Err(CredentialsError::Unreadable { source, .. })
                if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) => {}
            Err(CredentialsError::NoEntry { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Reads s3fs's format: `AK:SK` lines apply to any bucket, `BUCKET:AK:SK` to one; the
/// bucket's own line wins. `#` starts a comment.
pub fn read_passwd_file(path: &Path, bucket: &str) -> Result<Credentials, CredentialsError> {
    let unreadable = |source| CredentialsError::Unreadable { path: path.to_path_buf(), source };
    let mode = std::fs::metadata(path).map_err(unreadable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(CredentialsError::TooOpen { path: path.to_path_buf(), mode: mode & 0o7777 });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let mut default = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [ak, sk] if !ak.is_empty() && !sk.is_empty() => {
                default.get_or_insert_with(|| credentials(ak, sk));
            }
            [b, ak, sk] if !ak.is_empty() && !sk.is_empty() => {
                if *b == bucket {
                    return Ok(credentials(ak, sk));
                }
            }
            _ => return Err(CredentialsError::Malformed { path: path.to_path_buf(), line: i + 1 }),
        }
    }
    default.ok_or_else(|| CredentialsError::NoEntry { path: path.to_path_buf(), bucket: bucket.to_string() })
}

fn credentials(ak: &str, sk: &str) -> Credentials {
    Credentials::new(ak, sk, None, None, "xosfs-passwd-file")
}

/// Temporary credentials of a role from STS AssumeRole, signed with the base keys.
#[derive(Debug)]
struct AssumeRole {
    client: aws_sdk_sts::Client,
    role: RoleConfig,
}

impl AssumeRole {
    fn new(role: &RoleConfig, s3: &S3Config, base: SharedCredentialsProvider) -> AssumeRole {
        use aws_sdk_sts::config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
        // Built by hand rather than from the environment, so that AWS_ENDPOINT_URL and
        // profile settings meant for other tools cannot redirect it.
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(s3.region.clone()))
            .endpoint_url(&role.sts_endpoint)
            .credentials_provider(base)
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(s3.connect_timeout).read_timeout(s3.read_timeout).build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build();
        AssumeRole { client: aws_sdk_sts::Client::from_conf(conf), role: role.clone() }
    }

    async fn assume(&self) -> provider::Result {
        let failed = |reason: String| provider::error::CredentialsError::provider_error(StsFailure(reason));
        let duration = i32::try_from(self.role.duration.as_secs()).unwrap_or(i32::MAX);
        let out = self
            .client
            .assume_role()
            .role_arn(&self.role.arn)
            .role_session_name(&self.role.session_name)
            .duration_seconds(duration)
            .set_policy(self.role.policy.clone())
            .send()
            .await
            .map_err(|e| failed(sts_error_text(&e)))?;
        let c = out.credentials().ok_or_else(|| failed("the AssumeRole answer has no credentials".into()))?;
        let expiry = SystemTime::try_from(*c.expiration())
            .map_err(|_| failed("the AssumeRole answer has an unreadable expiration".into()))?;
        let renew = renew_before(SystemTime::now(), expiry);
        tracing::debug!(role = %self.role.arn, valid_for = ?expiry.duration_since(SystemTime::now()).unwrap_or_default(), "assumed role");
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(renew),
            "xosfs-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// The expiry the SDK's credential cache is told, which renews 5 to 10 s before it: a
/// quarter of the lifetime (at most 5 minutes) ahead of the real one, so that a client
/// clock running behind the service's does not send requests with a token the service
/// already considers expired.
fn renew_before(now: SystemTime, expiry: SystemTime) -> SystemTime {
    let lifetime = expiry.duration_since(now).unwrap_or_default();
    expiry - (lifetime / 4).min(Duration::from_secs(300))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StsFailure(String);

/// The service's code and message, or the innermost cause of a failed connection.
fn sts_error_text(e: &SdkError<AssumeRoleError, HttpResponse>) -> String {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown error");
            match se.err().message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            }
        }
        other => innermost(other),
    }
}

/// The SDK wraps causes in layers ("dispatch failure: io error: ..."); the innermost one
/// tells a user what is wrong.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    // Error messages are one line; the SDK's chain error lists each provider on its own.
    inner.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn bucket_line_wins_over_default_line() {
        let f = file(0o600, "# keys\nDEFAULTAK:DEFAULTSK\nmybucket:AK1:SK1\n");
        let c = read_passwd_file(f.path(), "mybucket").unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key()), ("AK1", "SK1"));
        let c = read_passwd_file(f.path(), "other").unwrap();
        assert_eq!(c.access_key_id(), "DEFAULTAK");
    }

    #[test]
    fn group_readable_file_is_refused() {
        let f = file(0o640, "AK:SK\n");
        let err = read_passwd_file(f.path(), "b").unwrap_err().to_string();
        assert!(err.contains("accessible by group or others (mode 0640)"), "{err}");
    }

    #[test]
    fn passwd_files_are_searched_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let system = dir.path().join("passwd-xosfs");
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        let found = |flag: Option<&Path>, env: Option<PathBuf>| {
            find_passwd_entry(flag, env, Some(home.clone()), &system, "b")
                .unwrap()
                .map(|c| c.access_key_id().to_string())
        };
        assert_eq!(found(None, None), None);
        write(&system, "SYSTEM:S\n");
        assert_eq!(found(None, None).as_deref(), Some("SYSTEM"));
        // A home file without a line for this bucket is passed over.
        write(&home.join(".passwd-xosfs"), "other:HOME:S\n");
        assert_eq!(found(None, None).as_deref(), Some("SYSTEM"));
        write(&home.join(".passwd-xosfs"), "HOME:S\n");
        assert_eq!(found(None, None).as_deref(), Some("HOME"));
        let env = dir.path().join("env");
        write(&env, "ENV:S\n");
        assert_eq!(found(None, Some(env.clone())).as_deref(), Some("ENV"));
        let flag = dir.path().join("flag");
        write(&flag, "FLAG:S\n");
        assert_eq!(found(Some(&flag), Some(env)).as_deref(), Some("FLAG"));
        // A named file must exist; a default one that is open to others is an error.
        let missing = dir.path().join("missing");
        assert!(find_passwd_entry(Some(&missing), None, None, &system, "b").is_err());
        std::fs::set_permissions(&system, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(find_passwd_entry(None, None, None, &system, "b"), Err(CredentialsError::TooOpen { .. })));
    }

    #[test]
    fn role_credentials_are_renewed_ahead_of_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = |s| Duration::from_secs(s);
        assert_eq!(renew_before(now, now + secs(3600)), now + secs(3300));
        assert_eq!(renew_before(now, now + secs(20)), now + secs(15));
        assert_eq!(renew_before(now, now - secs(1)), now - secs(1));
    }

    #[test]
    fn malformed_and_missing_entries_are_named() {
        let f = file(0o600, "just-one-field\n");
        assert!(matches!(read_passwd_file(f.path(), "b"), Err(CredentialsError::Malformed { line: 1, .. })));
        let f = file(0o600, "other:AK:SK\n");
        assert!(matches!(read_passwd_file(f.path(), "b"), Err(CredentialsError::NoEntry { .. })));
    }
}
