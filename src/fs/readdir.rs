//! Directory listings: pages of the store's listing merged into entries as readdir asks
//! for more, or a complete listing answered from memory within the attribute TTL.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex as AsyncMutex;

use super::attr::{Attr, Kind, ObjectStat, PosixMeta};
use super::error::FsError;
use super::inode::Inode;
use super::listing::{EntryMerger, ListedKind};
use super::DirEntry;
use super::{stat_from_head, Fs};
use crate::store::ObjectInfo;

/// HEADs in flight when a listing fetches POSIX attributes.
const LISTING_HEADS: usize = 32;
/// Keys per listing request: the most S3 and XOS return in one page.
pub(super) const LIST_PAGE_KEYS: i32 = 1000;

/// An open directory: its listing, loaded page by page as readdir asks for more.
///
/// The inode table is pruned of inodes nobody holds; the handle holds its directory, and
/// the inodes of the entries it has not handed out yet: readdirplus gives those to the
/// kernel, which takes its references only as they are handed out.
pub(super) struct DirHandle {
    dir: Arc<Inode>,
    /// When the listing began: a complete listing shows the directory as of then.
    began: Instant,
    entries: Vec<DirEntry>,
    /// The inodes of `entries[handed_out..]`.
    pending: VecDeque<Arc<Inode>>,
    /// Where the kernel last asked to read from: it has had the entries before.
    handed_out: usize,
    merger: EntryMerger,
    next: Option<String>,
    started: bool,
    done: bool,
}

impl DirHandle {
    pub(super) fn new(dir: Arc<Inode>, prefix: &str) -> DirHandle {
        DirHandle {
            dir,
            began: Instant::now(),
            entries: Vec::new(),
            pending: VecDeque::new(),
            handed_out: 0,
            merger: EntryMerger::new(prefix),
            next: None,
            started: false,
            done: false,
        }
    }

    fn push(&mut self, name: String, attr: Attr, inode: Arc<Inode>) {
        self.entries.push(DirEntry { name, attr });
        self.pending.push_back(inode);
    }

    /// The kernel asks for the entries from `offset` on: it has had those before.
    fn handed_out_before(&mut self, offset: usize) {
        while self.handed_out < offset && self.pending.pop_front().is_some() {
            self.handed_out += 1;
        }
    }
}

impl Fs {
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle::new(inode.clone(), &self.key(&inode)?);
        self.dirs.insert(fh, Arc::new(AsyncMutex::new(handle)));
        Ok(fh)
    }

    /// Entries from position `offset` on (0 is the start; `.` and `..` come first),
    /// listing further pages until at least `want` entries or the end are available.
    pub async fn readdir(&self, fh: u64, offset: u64, want: usize) -> Result<Vec<(u64, DirEntry)>, FsError> {
        let handle = self.dirs.get(&fh).map(|d| d.value().clone()).ok_or(FsError::BadHandle)?;
        // One reader per open directory at a time; the lock guards only this handle.
        let mut h = handle.lock().await;
        if offset == 0 && h.started {
            // rewinddir(3): start over, so the listing is current.
            let dir = h.dir.clone();
            *h = DirHandle::new(dir.clone(), &self.key(&dir)?);
        }
        if !h.started {
            let dir = h.dir.clone();
            let parent = self.inode(dir.parent())?;
            h.push(".".into(), self.attr_of(&dir), dir.clone());
            h.push("..".into(), self.attr_of(&parent), parent);
            h.started = true;
            // A directory listed completely within the TTL is listed from memory: every
            // name it had is in the inode table, with this mount's changes since.
            if dir.listed_within(self.cfg.metadata_ttl) {
                for (name, inode) in self.inodes.children_of(dir.ino) {
                    h.push(name, self.attr_of(&inode), inode);
                }
                h.done = true;
            }
        }
        let offset = offset as usize;
        h.handed_out_before(offset);
        while !h.done && h.entries.len() < offset.saturating_add(want) {
            self.list_more(&mut h).await?;
        }
        // At most what was asked for: a large directory is read in many calls, and each
        // copying everything up to the end would make listing it quadratic.
        Ok(h.entries.iter().enumerate().skip(offset).take(want).map(|(i, e)| (i as u64 + 1, e.clone())).collect())
    }

    pub(super) async fn list_more(&self, h: &mut DirHandle) -> Result<(), FsError> {
        let dir = h.dir.clone();
        // The marker is kept until the page has arrived: a failed page is asked for again,
        // not the listing from its start (which would repeat entries).
        let page = self.client.list_page(&self.key(&dir)?, h.next.clone(), LIST_PAGE_KEYS).await?;
        h.next = page.next.clone();
        h.done = h.next.is_none();
        let mut page_entries = Vec::new();
        for entry in h.merger.push(page) {
            let inode = match entry.kind {
                ListedKind::Directory => {
                    let inode = self.inodes.upsert_child(&dir, &entry.name, Kind::Directory);
                    // The listing proves it exists; its attributes wait for a lookup.
                    inode.mark_fresh();
                    inode
                }
                ListedKind::File(o) => {
                    let listed = ObjectStat {
                        size: o.size,
                        last_modified: o.last_modified,
                        etag: o.etag,
                        posix: PosixMeta::default(),
                    };
                    // A listing cannot tell a symlink or a special file from a file; one
                    // already looked at stays what it is while the object is the same version.
                    let kind = match self.inodes.child(dir.ino, &entry.name) {
                        Some(known) if known.kind != Kind::Directory && known.stat().same_version(&listed) => {
                            known.kind
                        }
                        _ => Kind::File,
                    };
                    let inode = self.inodes.upsert_child(&dir, &entry.name, kind);
                    inode.set_listed_stat(listed);
                    inode
                }
            };
            page_entries.push((entry.name, inode));
        }
        if dir.posix_below() {
            self.fetch_posix(&dir, &mut page_entries).await;
        }
        for (name, inode) in page_entries {
            h.push(name, self.attr_of(&inode), inode);
        }
        if h.done {
            // Names the store no longer has (and this mount did not make since the listing
            // began) leave the table, which then holds exactly this directory's children.
            let listed: std::collections::HashSet<&str> = h.entries.iter().map(|e| e.name.as_str()).collect();
            for (name, child) in self.inodes.children_of(dir.ino) {
                if !listed.contains(name.as_str())
                    && !self.writers.is_written(child.ino)
                    && child.confirmed_before(h.began)
                {
                    self.inodes.unlink_child(dir.ino, &name, child.ino);
                }
            }
            dir.mark_listed(h.began);
            // Files created here and not yet stored exist only locally until closed.
            let local: Vec<Arc<Inode>> = self
                .writers
                .inodes()
                .into_iter()
                .filter_map(|ino| self.inodes.get(ino))
                .filter(|i| i.parent() == dir.ino)
                .collect();
            for inode in local {
                let name = inode.name();
                if !h.entries.iter().any(|e| e.name == name) {
                    h.push(name, self.attr_of(&inode), inode);
                }
            }
        }
        self.prune_inodes();
        Ok(())
    }

    /// Completes listed objects whose POSIX attributes (and symlink-ness) are unknown with
    /// HEADs, [`LISTING_HEADS`] at a time. Listings take size and time from the listing;
    /// only directories known to hold POSIX attributes pay for this. A failed HEAD leaves
    /// the listing's attributes.
    pub(super) async fn fetch_posix(&self, dir: &Inode, entries: &mut [(String, Arc<Inode>)]) {
        use futures_util::stream::{self, StreamExt};
        let wanted: Vec<(usize, String)> = entries
            .iter()
            .enumerate()
            .filter(|(_, (_, i))| i.kind != Kind::Directory && !i.metadata_known() && !self.writers.is_written(i.ino))
            .filter_map(|(n, (_, i))| self.key(i).ok().map(|k| (n, k)))
            .collect();
        let found: Vec<(usize, ObjectInfo)> = stream::iter(wanted)
            .map(|(n, key)| async move { self.client.head_object(&key).await.ok().map(|info| (n, info)) })
            .buffer_unordered(LISTING_HEADS)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        for (n, info) in found {
            let name = entries[n].0.clone();
            entries[n].1 = self.found_object(dir, &name, stat_from_head(info));
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(&fh);
    }
}
