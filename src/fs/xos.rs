//! The XOS surface as extended attributes: `user.xos.*` of a file shows (and sets) what
//! the store keeps beside its bytes, `user.xos.bucket.*` of the mount root the bucket's
//! settings.
//!
//! Which names are listed decides what copying tools (`cp -a`, `rsync -X`, `tar --xattrs`)
//! carry: the ones that describe the object and are meaningful on a copy (tags when there
//! are some, ACL, storage class, Content-Type), whose values come from one HEAD, one
//! GetObjectTagging and one GetObjectAcl per file, kept for the attribute TTL. The ones
//! computed from this one object (ETag, version id, versions, URL) and the bucket's
//! settings are read by name only; setting a computed one is accepted and ignored, so a
//! copy that carries one never fails.

use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use tracing::{debug, warn};

use super::attr::Kind;
use super::error::FsError;
use super::inode::{Inode, ROOT_INO};
use super::prune::SweepAt;
use super::Fs;
use crate::store::settings::{self, BucketSetting};
use crate::store::{ErrorKind, ObjectError, ObjectInfo, PutOptions, Tags, VersionMarker};

pub const NAMESPACE: &str = "user.xos.";
/// The object's ETag, without quotes.
pub const ETAG: &str = "user.xos.etag";
pub const STORAGE_CLASS: &str = "user.xos.storage_class";
pub const CONTENT_TYPE: &str = "user.xos.content_type";
/// `k1=v1&k2=v2`, URL-encoded.
pub const TAGS: &str = "user.xos.tags";
/// A canned ACL, or `custom`.
pub const ACL: &str = "user.xos.acl";
/// A presigned GET URL valid for `--presign-expiry`; `user.xos.url.SECONDS` for another
/// validity.
pub const URL: &str = "user.xos.url";
pub const VERSION_ID: &str = "user.xos.version_id";
/// One line per version: id, time (RFC 3339, UTC), size, `latest` and/or `delete-marker`.
pub const VERSIONS: &str = "user.xos.versions";
/// `user.xos.bucket.NAME` of the mount root: the bucket's setting NAME.
pub const BUCKET: &str = "user.xos.bucket.";

/// SigV4's longest validity of a presigned URL: 7 days.
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the store keeps of one object beside its bytes, fetched as needed and kept for the
/// attribute TTL. `info` is `None` for a directory without a marker object.
#[derive(Clone, Default)]
pub(super) struct Facts {
    /// Whether `info` was fetched.
    fetched: bool,
    info: Option<ObjectInfo>,
    tags: Option<Tags>,
    /// Fetched (`Some`), and `None` inside where there is none (no object, or a store
    /// without ACLs).
    acl: Option<Option<String>>,
}

/// The facts of recently asked-about inodes; expired ones go once there are many.
pub(super) struct FactCache {
    entries: DashMap<u64, (Instant, Facts)>,
    sweep_at: SweepAt,
}

impl FactCache {
    pub(super) fn new() -> FactCache {
        FactCache { entries: DashMap::new(), sweep_at: SweepAt::new() }
    }

    pub(super) fn forget(&self, ino: u64) {
        self.entries.remove(&ino);
    }

    fn insert(&self, ino: u64, at: Instant, facts: Facts, ttl: Duration) {
        self.sweep_at.run(self.entries.len(), || {
            self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            self.entries.len()
        });
        self.entries.insert(ino, (at, facts));
    }
}

/// What a `user.xos.` name is.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    Etag,
    StorageClass,
    ContentType,
    Tags,
    Acl,
    Url(Option<Duration>),
    VersionId,
    Versions,
    Bucket(BucketSetting),
}

fn parse_name(name: &str) -> Result<Name, FsError> {
    Ok(match name {
        ETAG => Name::Etag,
        STORAGE_CLASS => Name::StorageClass,
        CONTENT_TYPE => Name::ContentType,
        TAGS => Name::Tags,
        ACL => Name::Acl,
        URL => Name::Url(None),
        VERSION_ID => Name::VersionId,
        VERSIONS => Name::Versions,
        _ => {
            if let Some(setting) = name.strip_prefix(BUCKET) {
                return BucketSetting::from_name(setting).map(Name::Bucket).ok_or(FsError::NoAttribute);
            }
            let seconds = name.strip_prefix(URL).and_then(|s| s.strip_prefix('.')).ok_or(FsError::NoAttribute)?;
            let expiry = seconds
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .filter(|d| !d.is_zero() && *d <= MAX_PRESIGN)
                .ok_or_else(|| invalid(format!("{name}: a URL is valid for 1 to {} seconds", MAX_PRESIGN.as_secs())))?;
            Name::Url(Some(expiry))
        }
    })
}

fn invalid(why: String) -> FsError {
    FsError::InvalidValue(settings::Invalid::Value(why))
}

/// The store refused a value (a policy it does not take, a class it does not have): the
/// caller's to fix, so EINVAL with the store's message in the log.
fn refused(e: ObjectError) -> FsError {
    match e.kind {
        ErrorKind::Rejected | ErrorKind::Malformed => FsError::Refused(Box::new(e)),
        _ => e.into(),
    }
}

/// `none` for what a directory without a marker (404) or a store without tagging or ACLs
/// (501) lacks.
fn or_none<T>(answer: Result<T, ObjectError>, none: T, no_object: bool) -> Result<T, ObjectError> {
    match answer {
        Err(e) if e.is(ErrorKind::NotFound) && no_object => Ok(none),
        Err(e) if e.status == Some(501) || e.code.as_deref() == Some("NotImplemented") => {
            debug!("{e}");
            Ok(none)
        }
        other => other,
    }
}

/// `request`'s answer when `needed`, else none and no request.
pub(super) async fn when<T>(needed: bool, request: impl std::future::Future<Output = T>) -> Option<T> {
    match needed {
        true => Some(request.await),
        false => None,
    }
}

fn text(value: &[u8]) -> Result<&str, FsError> {
    std::str::from_utf8(value).map(str::trim).map_err(|_| invalid("the value is not UTF-8".into()))
}

impl Fs {
    /// The facts of `inode`, with its tags and ACL when asked for, from the cache while
    /// fresh; what is missing is fetched at once, concurrently.
    async fn facts(&self, inode: &Inode, tags: bool, acl: bool) -> Result<Facts, FsError> {
        let cached =
            self.facts.entries.get(&inode.ino).filter(|e| e.0.elapsed() < self.cfg.metadata_ttl).map(|e| e.clone());
        let (at, mut facts) = cached.unwrap_or_else(|| (Instant::now(), Facts::default()));
        let need_info = !facts.fetched;
        let need_tags = tags && facts.tags.is_none();
        let need_acl = acl && facts.acl.is_none();
        if !(need_info || need_tags || need_acl) {
            return Ok(facts);
        }
        let key = self.key(inode)?;
        // The root of a whole-bucket mount is no object: nothing to ask.
        let (need_tags, need_acl) = (need_tags && !key.is_empty(), need_acl && !key.is_empty());
        if key.is_empty() {
            facts.tags.get_or_insert_with(Tags::new);
            facts.acl.get_or_insert(None);
        }
        let (info, got_tags, got_acl) = tokio::join!(
            when(need_info, self.stored_info(inode)),
            when(need_tags, self.client.get_tags(&key)),
            when(need_acl, self.client.get_acl(&key)),
        );
        if let Some(info) = info {
            facts.info = info?;
            facts.fetched = true;
        }
        let no_object = facts.info.is_none();
        if let Some(t) = got_tags {
            facts.tags = Some(or_none(t, Tags::new(), no_object)?);
        }
        if let Some(a) = got_acl {
            facts.acl = Some(Some(or_none(a, String::new(), no_object)?).filter(|a| !a.is_empty()));
        }
        self.facts.insert(inode.ino, at, facts.clone(), self.cfg.metadata_ttl);
        Ok(facts)
    }

    /// What a new upload of `key` (a rewrite, a copy) must store again: S3 keeps neither
    /// tags nor ACL on a PUT, and a copy gets no ACL (but the tags, unless `with_tags`
    /// asks for them). Asked for together; a failure only costs what failed, with a log
    /// line: the write itself does not depend on it.
    pub(super) async fn kept(&self, key: &str, with_tags: bool) -> Kept {
        let (tags, acl) = tokio::join!(when(with_tags, self.client.get_tags(key)), self.client.get_acl(key));
        let tags = tags.unwrap_or(Ok(Tags::new()));
        let lost = |what: &str, e: ObjectError| {
            // Keys allowed to write but not to read tags or ACLs would log on every write.
            match e.kind {
                ErrorKind::AccessDenied => debug!("the {what} of {key} are not kept by its new upload: {e}"),
                _ => warn!("the {what} of {key} are not kept by its new upload: {e}"),
            }
        };
        let tags = match or_none(tags, Tags::new(), true) {
            Ok(tags) => Some(tags).filter(|t| !t.is_empty()),
            Err(e) => {
                lost("tags", e);
                None
            }
        };
        // Only a canned ACL can be sent again; a custom one gives way to the mount's --acl.
        let acl = match or_none(acl, String::new(), true) {
            Ok(acl) => settings::CANNED_ACLS.contains(&acl.as_str()).then_some(acl),
            Err(e) => {
                lost("ACL", e);
                None
            }
        };
        Kept { tags, acl }
    }

    /// The `user.xos.` names listxattr shows for `inode` (see the module's comment).
    pub(super) async fn xos_listed(&self, inode: &Inode) -> Result<Vec<String>, FsError> {
        if let Some(opts) = self.pending_options(inode.ino).await? {
            return Ok(pending_listed(&opts));
        }
        // The kernel refuses user attributes on symlinks and special files: a copy of one
        // must not be handed names it cannot set.
        if !matches!(inode.kind, Kind::File | Kind::Directory) {
            return Ok(Vec::new());
        }
        // A name is listed only where it has a value (a store without ACLs has none), so a
        // tool reading every listed name gets each.
        let facts = self.facts(inode, true, true).await?;
        let Some(info) = &facts.info else { return Ok(Vec::new()) };
        let listed = [
            (TAGS, facts.tags.as_ref().is_some_and(|t| !t.is_empty())),
            (ACL, facts.acl.as_ref().is_some_and(Option::is_some)),
            (STORAGE_CLASS, true),
            (CONTENT_TYPE, info.content_type.is_some()),
        ];
        Ok(listed.into_iter().filter(|(_, has)| *has).map(|(n, _)| n.to_string()).collect())
    }

    /// The stored object's user metadata (for the xattrs kept in it), from the facts.
    pub(super) async fn stored_metadata(
        &self,
        inode: &Inode,
    ) -> Result<Option<std::collections::HashMap<String, String>>, FsError> {
        Ok(self.facts(inode, false, false).await?.info.map(|i| i.metadata))
    }

    /// getxattr(2) of a `user.xos.` name.
    pub(super) async fn xos_get(&self, inode: &Inode, name: &str) -> Result<Vec<u8>, FsError> {
        let name = parse_name(name)?;
        if let Name::Bucket(setting) = name {
            let root = self.bucket_root(inode)?;
            let value = self.client.get_bucket_setting(&root, setting).await?;
            return value.map(String::into_bytes).ok_or(FsError::NoAttribute);
        }
        if let Some(opts) = self.pending_options(inode.ino).await? {
            if let Some(value) = pending_value(&opts, &name) {
                return value.map(String::into_bytes).ok_or(FsError::NoAttribute);
            }
        }
        let facts = self.facts(inode, name == Name::Tags, name == Name::Acl).await?;
        let info = facts.info.ok_or(FsError::NoAttribute)?;
        let value = match name {
            Name::Etag => info.etag.map(|e| e.trim_matches('"').to_string()),
            Name::StorageClass => Some(info.storage_class.unwrap_or_else(|| "STANDARD".into())),
            Name::ContentType => info.content_type,
            Name::Tags => facts.tags.filter(|t| !t.is_empty()).map(|t| settings::format_tags(&t)),
            Name::Acl => facts.acl.flatten(),
            Name::VersionId => info.version_id,
            Name::Url(expiry) => {
                let expiry = expiry.unwrap_or(self.cfg.presign_expiry);
                Some(self.client.presign_get(&self.key(inode)?, None, expiry).await?)
            }
            Name::Versions => Some(self.versions_of(&self.key(inode)?).await?),
            Name::Bucket(_) => unreachable!("answered above"),
        };
        value.map(String::into_bytes).ok_or(FsError::NoAttribute)
    }

    /// The versions of `key`, one line each, newest first.
    async fn versions_of(&self, key: &str) -> Result<String, FsError> {
        let mut lines = String::new();
        let mut after: Option<VersionMarker> = None;
        loop {
            let page = self.client.list_versions(key, after, 1000).await?;
            for v in page.versions.iter().filter(|v| v.key == key) {
                let mut flags: Vec<&str> = Vec::new();
                if v.is_latest {
                    flags.push("latest");
                }
                if v.delete_marker {
                    flags.push("delete-marker");
                }
                let time = v.last_modified.map_or_else(|| "-".to_string(), rfc3339);
                let flags = if flags.is_empty() { "-".to_string() } else { flags.join(",") };
                lines.push_str(&format!("{} {} {} {}\n", v.version_id, time, v.size, flags));
            }
            // Keys after this one sort after it: the listing of this key is over.
            let past = page.versions.last().is_some_and(|v| v.key.as_str() > key);
            match page.next {
                Some(next) if !past => after = Some(next),
                _ => return Ok(lines),
            }
        }
    }

    /// setxattr(2) (`value`) or removexattr(2) (`None`) of a `user.xos.` name.
    pub(super) async fn xos_change(&self, inode: &Inode, name: &str, value: Option<&[u8]>) -> Result<(), FsError> {
        let parsed = parse_name(name)?;
        if let Name::Bucket(setting) = parsed {
            let root = self.bucket_root(inode)?;
            if self.cfg.read_only {
                return Err(FsError::ReadOnly);
            }
            return match value {
                Some(v) => {
                    let value = settings::validate(setting, text(v)?)?;
                    self.client.put_bucket_setting(&root, setting, &value).await.map_err(refused)
                }
                None => self.client.delete_bucket_setting(&root, setting).await.map_err(refused),
            };
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if matches!(parsed, Name::Etag | Name::Url(_) | Name::VersionId | Name::Versions) {
            debug!(name, "a computed attribute: the change is ignored");
            return Ok(());
        }
        // Tags and a canned ACL are checked before any request.
        let change = match (&parsed, value) {
            (Name::Tags, Some(v)) => Change::Tags(settings::parse_tags(text(v)?)?),
            (Name::Tags, None) => Change::Tags(Tags::new()),
            (Name::Acl, Some(v)) => Change::Acl(settings::parse_canned_acl(text(v)?)?.to_string()),
            (Name::StorageClass, Some(v)) => Change::StorageClass(storage_class(text(v)?)?),
            (Name::ContentType, Some(v)) => Change::ContentType(text(v)?.to_string()),
            // The ACL, storage class and Content-Type always have a value: removing one
            // (as rsync does with names its source lacks) leaves it as it is.
            _ => return Ok(()),
        };
        if let Some(writer) = self.writer_of(inode.ino) {
            // Stored with the upload (cp -a sets these on its open copy).
            let for_upload = change.clone();
            let edit: crate::write::OptionsEdit = Box::new(move |opts| for_upload.apply(opts));
            match super::unless_closed(writer.edit_options(edit).await)? {
                Some(()) => return Ok(()),
                // Its close stored the file just now (rsync sets xattrs right after the
                // close): the change goes to the stored object.
                None => self.writers.ended(inode.ino, &writer).await,
            }
        }
        self.facts.forget(inode.ino);
        let facts = self.facts(inode, matches!(change, Change::Tags(_)), matches!(change, Change::Acl(_))).await?;
        let info = facts.info.as_ref().ok_or(FsError::NotSupported)?;
        let key = self.key(inode)?;
        let result = match change {
            Change::Tags(tags) if Some(&tags) != facts.tags.as_ref() => self.client.put_tags(&key, &tags).await,
            Change::Acl(acl) if Some(&acl) != facts.acl.as_ref().and_then(Option::as_ref) => {
                self.client.put_acl(&key, &acl).await
            }
            Change::StorageClass(class) if Some(&class) != info.storage_class.as_ref().or(Some(&"STANDARD".into())) => {
                return self
                    .rewrite_metadata(inode, |i| {
                        i.storage_class = Some(class);
                        Ok(())
                    })
                    .await;
            }
            Change::ContentType(t) if Some(&t) != info.content_type.as_ref() => {
                return self
                    .rewrite_metadata(inode, |i| {
                        i.content_type = Some(t);
                        Ok(())
                    })
                    .await;
            }
            // The value it has already (a copying tool setting what it read): no request.
            _ => Ok(()),
        };
        self.facts.forget(inode.ino);
        result.map_err(refused)
    }

    /// A bucket's settings are attributes of its root directory: the mount root when it
    /// is the bucket's, a top-level directory of an account mount. Returns the key prefix
    /// of that root ("" or "BUCKET/").
    fn bucket_root(&self, inode: &Inode) -> Result<String, FsError> {
        if inode.kind != Kind::Directory {
            return Err(FsError::NotSupported);
        }
        match self.account.is_some() {
            false if inode.ino == ROOT_INO && self.cfg.prefix.is_empty() => Ok(String::new()),
            true if inode.ino != ROOT_INO && inode.parent() == ROOT_INO => self.key(inode),
            _ => Err(FsError::NotSupported),
        }
    }

    /// What the upload of a file being written will store, or `None` when it is not being
    /// written.
    pub(super) async fn pending_options(&self, ino: u64) -> Result<Option<PutOptions>, FsError> {
        match self.writer_of(ino) {
            Some(writer) => Ok(super::unless_closed(writer.options().await)?),
            None => Ok(None),
        }
    }
}

/// The tags and canned ACL of an object that its new upload stores again.
#[derive(Debug, Clone, Default)]
pub(super) struct Kept {
    pub tags: Option<Tags>,
    pub acl: Option<String>,
}

impl Kept {
    pub(super) fn apply(self, opts: &mut PutOptions) {
        if self.tags.is_some() {
            opts.tags = self.tags;
        }
        if self.acl.is_some() {
            opts.acl = self.acl;
        }
    }
}

/// A change of what the store keeps beside an object's bytes.
#[derive(Clone)]
enum Change {
    Tags(Tags),
    Acl(String),
    StorageClass(String),
    ContentType(String),
}

impl Change {
    fn apply(self, opts: &mut PutOptions) {
        match self {
            Change::Tags(tags) => opts.tags = Some(tags),
            Change::Acl(acl) => opts.acl = Some(acl),
            Change::StorageClass(class) => opts.storage_class = Some(class),
            Change::ContentType(t) => opts.content_type = Some(t),
        }
    }
}

/// A storage class name as S3 spells them (`STANDARD`, `STANDARD_IA`, `GLACIER`, ...).
fn storage_class(value: &str) -> Result<String, FsError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(invalid(format!("storage class {value:?}: a name such as STANDARD or STANDARD_IA")));
    }
    Ok(value.to_string())
}

/// The `user.xos.` names of a file being written: the ones its upload sets.
fn pending_listed(opts: &PutOptions) -> Vec<String> {
    let set = [
        (TAGS, opts.tags.as_ref().is_some_and(|t| !t.is_empty())),
        (ACL, opts.acl.is_some()),
        (STORAGE_CLASS, opts.storage_class.is_some()),
        (CONTENT_TYPE, opts.content_type.is_some()),
    ];
    set.into_iter().filter(|(_, set)| *set).map(|(n, _)| n.to_string()).collect()
}

/// The value of `name` that the upload of a file being written sets; `None` when the
/// upload does not decide it (the stored object answers), `Some(None)` when it stores none.
fn pending_value(opts: &PutOptions, name: &Name) -> Option<Option<String>> {
    match name {
        Name::Tags => Some(opts.tags.as_ref().filter(|t| !t.is_empty()).map(settings::format_tags)),
        Name::Acl => opts.acl.clone().map(Some),
        Name::StorageClass => opts.storage_class.clone().map(Some),
        Name::ContentType => opts.content_type.clone().map(Some),
        _ => None,
    }
}

/// A time as RFC 3339 in UTC, to the second.
fn rfc3339(t: SystemTime) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    DateTime::from_secs(secs).fmt(Format::DateTime).unwrap_or_else(|_| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_url_validities_up_to_seven_days() {
        assert_eq!(parse_name("user.xos.url").unwrap(), Name::Url(None));
        assert_eq!(parse_name("user.xos.url.604800").unwrap(), Name::Url(Some(MAX_PRESIGN)));
        assert!(matches!(parse_name("user.xos.url.604801"), Err(FsError::InvalidValue(_))));
        assert!(matches!(parse_name("user.xos.url.0"), Err(FsError::InvalidValue(_))));
        assert_eq!(parse_name("user.xos.bucket.cors").unwrap(), Name::Bucket(BucketSetting::Cors));
        assert!(matches!(parse_name("user.xos.bucket.nope"), Err(FsError::NoAttribute)));
        assert!(matches!(parse_name("user.xos.other"), Err(FsError::NoAttribute)));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)), "2026-11-30T00:53:20Z");
    }
}
