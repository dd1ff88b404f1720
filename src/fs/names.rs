//! Names and lookups: what a name in a directory is (asking the store when the caches
//! cannot say), the negative and complete-listing caches, attributes, and forgetting.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::attr::{self, Attr, Kind, ObjectStat, PosixMeta};
use super::error::FsError;
use super::inode::Inode;
use super::listing::{invalid_name_reason, EntryMerger, NAME_MAX};
use super::readdir::LIST_PAGE_KEYS;
use super::{miss_bursts, stat_from_head, Fs};
use crate::store::{ErrorKind, ObjectInfo};

impl Fs {
    /// Finds `name` in `parent`; on success the kernel holds one more reference to it.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        if let Some(answer) = self.lookup_cached(parent, name) {
            return answer;
        }
        let dir = self.inode(parent)?;
        let inode = match self.inodes.child(parent, name) {
            Some(_) => self.resolve_child(&dir, name).await?,
            None => match self.resolve_child(&dir, name).await {
                Err(FsError::NotFound) => {
                    if !self.cfg.negative_ttl.is_zero() {
                        self.note_missing(parent, name);
                        if self.miss_bursts.note_miss(parent, self.cfg.negative_ttl) {
                            self.list_names_for_misses(&dir).await?;
                        }
                    }
                    return Err(FsError::NotFound);
                }
                other => other?,
            },
        };
        Ok(self.found(&inode))
    }

    /// What [`Fs::lookup`] answers without asking the store, `None` when it must ask.
    pub(super) fn lookup_cached(&self, parent: u64, name: &str) -> Option<Result<Attr, FsError>> {
        let dir = match self.inode(parent) {
            Ok(dir) if dir.kind != Kind::Directory => return Some(Err(FsError::NotDirectory)),
            Ok(dir) => dir,
            Err(e) => return Some(Err(e)),
        };
        if name.len() > NAME_MAX {
            return Some(Err(FsError::NameTooLong));
        }
        if invalid_name_reason(name).is_some() {
            return Some(Err(FsError::NotFound));
        }
        match self.inodes.child(parent, name) {
            Some(known) if !self.needs_revalidation(&known) => Some(Ok(self.found(&known))),
            None if self.known_missing(&dir, name) => Some(Err(FsError::NotFound)),
            _ => None,
        }
    }

    /// A lookup's answer: the kernel holds one more reference to `inode`.
    fn found(&self, inode: &Arc<Inode>) -> Attr {
        self.inodes.remember(inode);
        self.prune_inodes();
        self.attr_of(inode)
    }

    /// Whether `name` (not in the inode table) is known not to exist without asking the
    /// store: it was found missing within the negative TTL, a listing for a burst of
    /// misses did not show it, or the directory was listed completely within the
    /// attribute TTL without it. Names created through this mount enter the inode table
    /// at once, so they never meet this.
    pub(super) fn known_missing(&self, dir: &Inode, name: &str) -> bool {
        let key = (dir.ino, name.to_string());
        if let Some(at) = self.missing.get(&key).map(|t| *t) {
            if at.elapsed() < self.cfg.negative_ttl {
                return true;
            }
            self.missing.remove_if(&key, |_, t| *t == at);
        }
        self.miss_bursts.known_missing(dir.ino, name, self.cfg.negative_ttl) || dir.listed_within(self.cfg.metadata_ttl)
    }

    /// Lists `dir` for its names alone, after a burst of misses in it
    /// ([`super::miss_bursts`]); a directory of more than its page limit is left alone.
    async fn list_names_for_misses(&self, dir: &Inode) -> Result<(), FsError> {
        let began = Instant::now();
        let prefix = self.key(dir)?;
        let mut merger = EntryMerger::new(&prefix);
        let mut names = HashSet::new();
        let mut next = None;
        for _ in 0..miss_bursts::MAX_PAGES {
            let page = self.client.list_page(&prefix, next, LIST_PAGE_KEYS).await?;
            next = page.next.clone();
            names.extend(merger.push(page).into_iter().map(|e| e.name));
            if next.is_none() {
                self.miss_bursts.listed(dir.ino, began, Some(names));
                return Ok(());
            }
        }
        self.miss_bursts.listed(dir.ino, began, None);
        Ok(())
    }

    /// Asks the store what `name` is: a directory if anything lies below `name/` (which
    /// wins over an object of the same name), else a file if the object exists.
    pub(super) async fn resolve_child(&self, dir: &Inode, name: &str) -> Result<Arc<Inode>, FsError> {
        let file_key = format!("{}{name}", self.key(dir)?);
        let dir_prefix = format!("{file_key}/");
        let (listed, head) =
            tokio::join!(self.client.list_page(&dir_prefix, None, 1), self.client.head_object(&file_key));
        let listed = listed?;
        if !listed.objects.is_empty() || !listed.common_prefixes.is_empty() {
            let inode = self.inodes.upsert_child(dir, name, Kind::Directory);
            // A marker (listed first, as the shortest key) carries the directory's attributes.
            let stat = match listed.objects.first().filter(|o| o.key == dir_prefix) {
                Some(_) => match self.client.head_object(&dir_prefix).await {
                    Ok(info) => stat_from_head(info),
                    Err(e) if e.is(ErrorKind::NotFound) => ObjectStat::default(),
                    Err(e) => return Err(e.into()),
                },
                None => ObjectStat::default(),
            };
            // A marker with POSIX attributes was made by s3fs or xosfs: so were its files.
            if stat.posix != PosixMeta::default() {
                inode.mark_posix_below();
            }
            inode.set_stat(stat);
            return Ok(inode);
        }
        match head {
            Ok(info) => Ok(self.found_object(dir, name, stat_from_head(info))),
            Err(e) if e.is(ErrorKind::NotFound) => {
                if let Some(stale) = self.inodes.child(dir.ino, name) {
                    self.inodes.unlink_child(dir.ino, name, stale.ino);
                }
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records what a HEAD said of object `name` in `dir` (a symlink or a file). POSIX
    /// attributes other than the mount's defaults mark the directory as one whose
    /// listings need them.
    pub(super) fn found_object(&self, dir: &Inode, name: &str, stat: ObjectStat) -> Arc<Inode> {
        let inode = self.inodes.upsert_child(dir, name, stat.posix.object_kind());
        let shown = attr::file_attr(inode.ino, &stat, &self.cfg, self.mounted_at);
        let defaults = attr::file_attr(inode.ino, &ObjectStat::default(), &self.cfg, self.mounted_at);
        if (shown.kind, shown.perm, shown.uid, shown.gid) != (defaults.kind, defaults.perm, defaults.uid, defaults.gid)
        {
            dir.mark_posix_below();
        }
        inode.set_stat(stat);
        inode
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    /// Attributes of `ino`. A file that lost its name (unlinked, deleted in the store or
    /// replaced) while open keeps answering for its descriptors with no links, as on a
    /// local disk; with none open it is gone.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        if let Some(answer) = self.getattr_cached(ino) {
            return answer;
        }
        let inode = self.inode(ino)?;
        let linked = match self.revalidate(&inode).await {
            Ok(_) => true,
            // The store lost it: revalidate took the name away.
            Err(FsError::NotFound) => false,
            Err(e) => return Err(e),
        };
        self.attr_without_revalidation(&inode, linked)
    }

    /// What [`Fs::getattr`] answers without asking the store, `None` when it must ask.
    fn getattr_cached(&self, ino: u64) -> Option<Result<Attr, FsError>> {
        let inode = match self.inode(ino) {
            Ok(inode) => inode,
            Err(e) => return Some(Err(e)),
        };
        if inode.kind == Kind::Directory {
            return Some(Ok(self.attr_of(&inode)));
        }
        let linked = self.inodes.is_linked(&inode);
        if linked && self.needs_revalidation(&inode) {
            return None;
        }
        Some(self.attr_without_revalidation(&inode, linked))
    }

    /// The attributes of file `inode`, as known: through its name while `linked`, else
    /// through a descriptor still open.
    fn attr_without_revalidation(&self, inode: &Inode, linked: bool) -> Result<Attr, FsError> {
        let ino = inode.ino;
        if linked {
            return Ok(self.attr_of(inode));
        }
        let open = self.files.iter().find(|f| f.ino == ino).map(|f| f.value().clone()).ok_or(FsError::NotFound)?;
        let mut attr = self.attr_of(inode);
        attr.nlink = 0;
        // Its writer is no longer the file's latest (unlink let go of it), but still this
        // descriptor's.
        if let Some(writer) = &open.writer {
            attr.size = writer.size();
        }
        Ok(attr)
    }

    /// Asks the store for the object as it is now. A file the store does not have loses
    /// its name, unless it is being written here (not yet stored, or replaced at close).
    pub(super) async fn revalidate(&self, inode: &Inode) -> Result<ObjectInfo, FsError> {
        match self.client.head_object(&self.key(inode)?).await {
            Ok(info) => {
                inode.set_stat(stat_from_head(info.clone()));
                Ok(info)
            }
            Err(e) if e.is(ErrorKind::NotFound) => {
                if !self.writers.is_written(inode.ino) {
                    self.inodes.unlink_child(inode.parent(), &inode.name(), inode.ino);
                }
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The entry `name` of `dir`, from memory when fresh, else from the store.
    pub(super) async fn find_child(&self, dir: &Inode, name: &str) -> Result<Option<Arc<Inode>>, FsError> {
        if let Some(known) = self.inodes.child(dir.ino, name) {
            if !self.needs_revalidation(&known) {
                return Ok(Some(known));
            }
        }
        match self.resolve_child(dir, name).await {
            Ok(inode) => Ok(Some(inode)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
