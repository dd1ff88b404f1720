//! Where the keys come from: an s3fs-style password file, or the AWS environment variables
//! and shared profile files (which also carry session tokens). Instance-metadata lookups are
//! deliberately left out of the chain: XOS is not EC2, and probing 169.254.169.254 only
//! delays a clear "no credentials" error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

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
    #[error("no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure an AWS profile, or pass --passwd-file ({0})")]
    NotFound(String),
}

/// The provider for this mount: the password file when one is named, else the AWS chain.
pub async fn provider(passwd_file: Option<&Path>, bucket: &str) -> Result<SharedCredentialsProvider, CredentialsError> {
    let provider = match passwd_file {
        Some(path) => SharedCredentialsProvider::new(read_passwd_file(path, bucket)?),
        None => SharedCredentialsProvider::new(
            CredentialsProviderChain::first_try("environment", EnvironmentVariableCredentialsProvider::new())
                .or_else("profile", ProfileFileCredentialsProvider::builder().build()),
        ),
    };
    // Resolve once now so that a missing key is a start-up error, not an EIO on first access.
    provider.provide_credentials().await.map_err(|e| CredentialsError::NotFound(e.to_string()))?;
    Ok(provider)
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
    fn malformed_and_missing_entries_are_named() {
        let f = file(0o600, "just-one-field\n");
        assert!(matches!(read_passwd_file(f.path(), "b"), Err(CredentialsError::Malformed { line: 1, .. })));
        let f = file(0o600, "other:AK:SK\n");
        assert!(matches!(read_passwd_file(f.path(), "b"), Err(CredentialsError::NoEntry { .. })));
    }
}
