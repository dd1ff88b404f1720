//! An account mount's top level (`--all-buckets`): the directories there are the
//! account's buckets. mkdir makes a bucket and rmdir removes an empty one; nothing else
//! is made or renamed there, and a bucket's directory, which has no object, keeps its
//! mode, owner and times in memory. Renames and server-side copies stay within one
//! bucket, as they stay within one bucket mount.

use std::time::{Instant, SystemTime};

use tracing::warn;

use super::attr::{Attr, Kind, ObjectStat};
use super::error::FsError;
use super::inode::{Inode, ROOT_INO};
use super::Fs;
use crate::store::account::bucket_name_problem;
use crate::store::{Account, ErrorKind};

impl Fs {
    /// The account, when `dir` is the top of an account mount.
    pub(super) fn account_top(&self, dir: u64) -> Option<&Account> {
        self.account.as_deref().filter(|_| dir == ROOT_INO)
    }

    /// Files, symlinks and nodes are made only inside buckets.
    pub(super) fn refuse_at_top(&self, dir: u64) -> Result<(), FsError> {
        match self.account_top(dir) {
            Some(_) => Err(FsError::AccountTop("only buckets, made by mkdir, can be here")),
            None => Ok(()),
        }
    }

    /// Whether `inode` is a bucket's root directory, which has no object of its own to
    /// keep attributes in: the root of a bucket mount (not of a prefix, which has its
    /// marker), a bucket's directory of an account mount, or the account's top.
    pub(super) fn is_bucket_root(&self, inode: &Inode) -> bool {
        let top = inode.ino == ROOT_INO;
        match self.account {
            Some(_) => top || inode.parent() == ROOT_INO,
            None => top && self.cfg.prefix.is_empty(),
        }
    }

    /// A rename moves between directories of one bucket.
    pub(super) fn check_rename_between(&self, from: &Inode, to: &Inode) -> Result<(), FsError> {
        if self.account.is_none() {
            return Ok(());
        }
        if from.ino == ROOT_INO || to.ino == ROOT_INO {
            return Err(FsError::AccountTop("a bucket cannot be renamed, nor anything moved here"));
        }
        match bucket_of(&self.key(from)?) == bucket_of(&self.key(to)?) {
            true => Ok(()),
            false => Err(FsError::CrossBucket),
        }
    }

    /// mkdir at the top: CreateBucket (with `--acl`), once the name passes the bucket
    /// naming rules.
    pub(super) async fn make_bucket(&self, account: &Account, top: &Inode, name: &str) -> Result<Attr, FsError> {
        if let Some(why) = bucket_name_problem(name) {
            return Err(FsError::InvalidBucketName(name.to_string(), why));
        }
        let checked = Instant::now();
        if self.find_child(top, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        account.create(name, self.upload_defaults.acl.as_deref()).await?;
        let inode = self.made_here(top, name, Kind::Directory);
        inode.set_stat(ObjectStat { last_modified: Some(SystemTime::now()), ..ObjectStat::default() });
        // A new bucket is empty: the files put in it next cost no lookups.
        inode.mark_listed(checked);
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// rmdir at the top, once nothing is listed in the bucket: DeleteBucket, unless
    /// unfinished multipart uploads are left in it, which count as contents.
    pub(super) async fn remove_bucket(&self, account: &Account, name: &str) -> Result<(), FsError> {
        let uploads = self.client.list_multipart_uploads(&format!("{name}/"), None, 1).await?;
        if !uploads.uploads.is_empty() {
            warn!(
                bucket = name,
                "not removed: it holds unfinished multipart uploads (`xosfs cleanup {name} --older-than 0s` aborts them)"
            );
            return Err(FsError::NotEmpty);
        }
        match account.delete(name).await {
            Err(e) if e.is(ErrorKind::NotEmpty) => {
                warn!(bucket = name, "not removed: the store still holds something in it, such as old versions ({e})");
                Err(FsError::NotEmpty)
            }
            deleted => Ok(deleted?),
        }
    }
}

/// The bucket of a key of an account mount.
pub(super) fn bucket_of(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}
