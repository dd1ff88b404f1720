//! The inode table: inode number <-> (parent, name) <-> object key, with the kernel's
//! lookup counts. Both maps are sharded (dashmap); no lock is held across an await.
//! Keys are derived from the parent chain, not stored, so renaming a directory moves
//! everything below it at once. An inode leaves when the kernel forgets it, or, if the
//! kernel never held it (listings make many), when the table is pruned.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::attr::{Kind, ObjectStat};

pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    location: Mutex<Location>,
    state: Mutex<InodeState>,
}

/// Where an inode sits in the tree; changed by rename.
#[derive(Debug, Clone)]
struct Location {
    parent: u64,
    name: String,
}

#[derive(Debug)]
struct InodeState {
    stat: ObjectStat,
    /// When the store last confirmed `stat`; `None` forces a revalidation.
    validated: Option<Instant>,
    lookups: u64,
    /// The version whose bytes the kernel's page cache may hold for this file.
    page_cache_etag: Option<String>,
    /// When a complete listing of this directory began; every child it showed is in the
    /// table (a child leaving the table resets this).
    listed: Option<Instant>,
    /// When a child last left the table (forgotten or pruned): a listing that began
    /// before then no longer has all its names in memory.
    child_dropped: Option<Instant>,
    /// Whether `stat.posix` is what the store holds for this version (a HEAD or our own
    /// write), not a listing's guess.
    metadata_known: bool,
    /// Directory: its objects carry POSIX attributes worth a HEAD when listed.
    posix_below: bool,
}

impl Inode {
    fn new(ino: u64, kind: Kind, parent: u64, name: &str, lookups: u64) -> Inode {
        Inode {
            ino,
            kind,
            location: Mutex::new(Location { parent, name: name.to_string() }),
            state: Mutex::new(InodeState {
                stat: ObjectStat::default(),
                validated: None,
                lookups,
                page_cache_etag: None,
                listed: None,
                child_dropped: None,
                metadata_known: false,
                posix_below: false,
            }),
        }
    }

    pub fn parent(&self) -> u64 {
        self.location.lock().parent
    }

    pub fn name(&self) -> String {
        self.location.lock().name.clone()
    }

    pub fn stat(&self) -> ObjectStat {
        self.state.lock().stat.clone()
    }

    /// The stat, if the store confirmed it less than `ttl` ago.
    pub fn fresh_stat(&self, ttl: std::time::Duration) -> Option<ObjectStat> {
        let s = self.state.lock();
        s.validated.filter(|t| t.elapsed() < ttl).map(|_| s.stat.clone())
    }

    /// What the store (a HEAD) or our own change says this inode is now.
    pub fn set_stat(&self, stat: ObjectStat) {
        let mut s = self.state.lock();
        s.stat = stat;
        s.validated = Some(Instant::now());
        s.metadata_known = true;
    }

    pub fn metadata_known(&self) -> bool {
        self.state.lock().metadata_known
    }

    /// Directory: listings should fetch the POSIX attributes of the objects they show.
    pub fn mark_posix_below(&self) {
        self.state.lock().posix_below = true;
    }

    pub fn posix_below(&self) -> bool {
        self.state.lock().posix_below
    }

    /// Whether the store (or this mount) last confirmed this inode before `t`.
    pub fn confirmed_before(&self, t: Instant) -> bool {
        self.state.lock().validated.is_none_or(|v| v < t)
    }

    /// A complete listing of this directory began at `at`; it counts unless a child left
    /// the table since (then a name it showed may be missing from memory).
    pub fn mark_listed(&self, at: Instant) {
        let mut s = self.state.lock();
        if s.child_dropped.is_none_or(|dropped| dropped < at) {
            s.listed = Some(at);
        }
    }

    /// Whether a complete listing began less than `ttl` ago.
    pub fn listed_within(&self, ttl: std::time::Duration) -> bool {
        self.state.lock().listed.is_some_and(|t| t.elapsed() < ttl)
    }

    /// Whether the kernel may keep the pages it cached for this file when it is opened
    /// to read version `etag` (it is the version those pages came from); remembers
    /// `etag` as the version cached from now on. `None` (being written, or no ETag)
    /// never keeps them.
    pub fn keep_page_cache(&self, etag: Option<&str>) -> bool {
        let mut s = self.state.lock();
        let keep = etag.is_some() && s.page_cache_etag.as_deref() == etag;
        s.page_cache_etag = etag.map(str::to_string);
        keep
    }

    /// What we know may be wrong (an upload of ours failed): ask the store next time.
    pub fn invalidate(&self) {
        self.state.lock().validated = None;
    }

    /// The store just showed this inode exists; what we know of it stays as it is.
    pub fn mark_fresh(&self) {
        self.state.lock().validated = Some(Instant::now());
    }

    /// A listing knows size, time and ETag but not the POSIX metadata: keep what a HEAD
    /// found while the object is still the same version (metadata only changes with one).
    pub fn set_listed_stat(&self, listed: ObjectStat) {
        let mut s = self.state.lock();
        let same = s.stat.same_version(&listed);
        let posix = if same { s.stat.posix } else { Default::default() };
        s.stat = ObjectStat { posix, ..listed };
        s.metadata_known &= same;
        s.validated = Some(Instant::now());
    }
}

pub struct InodeTable {
    root_prefix: String,
    inodes: DashMap<u64, Arc<Inode>>,
    /// Directory inode -> its children by name, so one directory's names are at hand
    /// without scanning the others'.
    children: DashMap<u64, HashMap<String, u64>>,
    next_ino: AtomicU64,
    /// `inodes.len()`, kept apart so that checking it takes no lock.
    len: AtomicUsize,
}

impl InodeTable {
    pub fn new(root_prefix: &str) -> InodeTable {
        let table = InodeTable {
            root_prefix: root_prefix.to_string(),
            inodes: DashMap::new(),
            children: DashMap::new(),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            len: AtomicUsize::new(1),
        };
        table.inodes.insert(ROOT_INO, Arc::new(Inode::new(ROOT_INO, Kind::Directory, ROOT_INO, "", 1)));
        table
    }

    /// How many inodes the table holds.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.inodes.get(&ino).map(|e| e.value().clone())
    }

    /// Whether `inode` still has its name. Unlinking it, finding it gone from the store or
    /// renaming another file over it takes the name away, while the kernel may still
    /// hold the inode (for open descriptors).
    pub fn is_linked(&self, inode: &Inode) -> bool {
        if inode.ino == ROOT_INO {
            return true;
        }
        let Location { parent, name } = inode.location.lock().clone();
        self.children.get(&parent).is_some_and(|names| names.get(&name) == Some(&inode.ino))
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<Arc<Inode>> {
        let ino = *self.children.get(&parent)?.get(name)?;
        self.get(ino)
    }

    /// The object key of a file, or the prefix (with its trailing `/`) of a directory;
    /// `None` when an ancestor is no longer known (the inode is stale).
    pub fn key_of(&self, inode: &Inode) -> Option<String> {
        let mut names = Vec::new();
        let mut loc = inode.location.lock().clone();
        let mut current = inode.ino;
        while current != ROOT_INO {
            names.push(loc.name.clone());
            current = loc.parent;
            loc = self.get(current)?.location.lock().clone();
        }
        let mut key = self.root_prefix.clone();
        for name in names.iter().rev() {
            key.push_str(name);
            key.push('/');
        }
        if inode.kind != Kind::Directory {
            key.pop();
        }
        Some(key)
    }

    /// Moves `inode` to `name` in `new_parent`; whatever had that name loses it.
    pub fn rename(&self, inode: &Inode, new_parent: u64, name: &str) {
        // New name first, old one last: a concurrent `is_linked` never finds it nameless.
        self.children.entry(new_parent).or_default().insert(name.to_string(), inode.ino);
        let new = Location { parent: new_parent, name: name.to_string() };
        let old = std::mem::replace(&mut *inode.location.lock(), new);
        if (old.parent, old.name.as_str()) != (new_parent, name) {
            self.unlink_child(old.parent, &old.name, inode.ino);
        }
    }

    /// The inode for `name` in `parent` with this kind, made if needed. A name whose kind
    /// changed (a file replaced by a directory) gets a new inode number.
    pub fn upsert_child(&self, parent: &Inode, name: &str, kind: Kind) -> Arc<Inode> {
        let mut names = self.children.entry(parent.ino).or_default();
        if let Some(existing) = names.get(name).and_then(|ino| self.get(*ino)) {
            if existing.kind == kind {
                return existing;
            }
        }
        let inode = Arc::new(Inode::new(self.next_ino.fetch_add(1, Ordering::Relaxed), kind, parent.ino, name, 0));
        self.inodes.insert(inode.ino, inode.clone());
        self.len.fetch_add(1, Ordering::Relaxed);
        names.insert(name.to_string(), inode.ino);
        inode
    }

    /// The kernel now holds one more reference (a lookup, create or readdirplus entry).
    pub fn remember(&self, inode: &Inode) {
        inode.state.lock().lookups += 1;
    }

    /// The kernel dropped `n` references; the inode goes once none are left (or, if an
    /// operation under way holds it, at a prune after that).
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(inode) = self.get(ino) else { return };
        let gone = {
            let mut s = inode.state.lock();
            s.lookups = s.lookups.saturating_sub(n);
            s.lookups == 0
        };
        // Our own reference would keep it.
        drop(inode);
        if gone {
            self.remove_unreferenced(ino);
        }
    }

    /// Removes the inodes nobody refers to: no kernel reference, not the root, no children
    /// left in the table, and not what `keep` says to keep. A pass removes leaves; passes
    /// repeat over the parents of what the last one removed, which may have become leaves.
    /// Returns how many went.
    pub fn prune(&self, keep: impl Fn(u64) -> bool) -> usize {
        // Numbers, not inodes: a reference held here would keep them (remove_unreferenced).
        let mut candidates: Vec<u64> = self
            .inodes
            .iter()
            .filter(|e| *e.key() != ROOT_INO && e.value().state.lock().lookups == 0)
            .map(|e| *e.key())
            .collect();
        let mut removed = 0;
        let mut shrunk_dirs = HashSet::new();
        while !candidates.is_empty() {
            let mut parents = HashSet::new();
            for ino in candidates {
                let has_children = self.children.get(&ino).is_some_and(|names| !names.is_empty());
                if has_children || keep(ino) {
                    continue;
                }
                if let Some(parent) = self.remove_unreferenced(ino) {
                    removed += 1;
                    parents.insert(parent);
                }
            }
            shrunk_dirs.extend(&parents);
            candidates = parents.into_iter().filter(|p| *p != ROOT_INO).collect();
        }
        // Memory is what pruning is for: maps keep the capacity of their largest size.
        for dir in shrunk_dirs {
            if let Some(mut names) = self.children.get_mut(&dir) {
                names.shrink_to_fit();
            }
        }
        if removed > 0 {
            self.inodes.shrink_to_fit();
        }
        removed
    }

    /// Removes `ino` if the kernel holds no reference to it and nothing else holds the
    /// inode: an operation under way may be about to hand it to the kernel (a lookup
    /// between finding and remembering it, an open directory's listed entries). Both are
    /// checked under the map's lock, so no one takes the inode from the table meanwhile.
    /// Returns the parent it was taken from.
    fn remove_unreferenced(&self, ino: u64) -> Option<u64> {
        let (_, inode) =
            self.inodes.remove_if(&ino, |_, inode| Arc::strong_count(inode) == 1 && inode.state.lock().lookups == 0)?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.children.remove_if(&ino, |_, names| names.is_empty());
        let loc = inode.location.lock().clone();
        if self.unlink_child(loc.parent, &loc.name, ino) {
            match self.get(loc.parent) {
                // A name dropped from the table leaves its directory's listing incomplete.
                Some(parent) => {
                    let mut s = parent.state.lock();
                    s.listed = None;
                    s.child_dropped = Some(Instant::now());
                }
                None => {
                    self.children.remove_if(&loc.parent, |_, names| names.is_empty());
                }
            }
        }
        Some(loc.parent)
    }

    /// The children of `dir` in the table, by name.
    pub fn children_of(&self, dir: u64) -> Vec<(String, Arc<Inode>)> {
        let names: Vec<(String, u64)> =
            self.children.get(&dir).map(|n| n.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
        let mut out: Vec<(String, Arc<Inode>)> =
            names.into_iter().filter_map(|(name, ino)| self.get(ino).map(|i| (name, i))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops `name` from `parent` if it still names `ino` (the store says it is gone, so
    /// the next lookup asks again); whether it did.
    pub fn unlink_child(&self, parent: u64, name: &str, ino: u64) -> bool {
        let Some(mut names) = self.children.get_mut(&parent) else { return false };
        if names.get(name) == Some(&ino) {
            names.remove(name);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn children_get_stable_numbers_and_keys() {
        let t = InodeTable::new("pre/");
        let root = t.get(ROOT_INO).unwrap();
        let d = t.upsert_child(&root, "d", Kind::Directory);
        assert_eq!(t.key_of(&d).unwrap(), "pre/d/");
        let f = t.upsert_child(&d, "f", Kind::File);
        assert_eq!(t.key_of(&f).unwrap(), "pre/d/f");
        assert_eq!(t.upsert_child(&d, "f", Kind::File).ino, f.ino);
        assert_eq!(t.child(d.ino, "f").unwrap().ino, f.ino);
    }

    #[test]
    fn renaming_a_directory_moves_the_keys_below_it() {
        let t = InodeTable::new("");
        let root = t.get(ROOT_INO).unwrap();
        let a = t.upsert_child(&root, "a", Kind::Directory);
        let b = t.upsert_child(&root, "b", Kind::Directory);
        let f = t.upsert_child(&a, "f", Kind::File);
        t.rename(&a, b.ino, "moved");
        assert_eq!(t.key_of(&f).unwrap(), "b/moved/f");
        assert!(t.child(ROOT_INO, "a").is_none());
        assert_eq!(t.child(b.ino, "moved").unwrap().ino, a.ino);
    }

    #[test]
    fn a_name_is_lost_to_unlink_and_to_a_rename_over_it_but_not_to_renaming_in_place() {
        let t = InodeTable::new("");
        let root = t.get(ROOT_INO).unwrap();
        let (a, b) = (t.upsert_child(&root, "a", Kind::File), t.upsert_child(&root, "b", Kind::File));
        assert!(t.is_linked(&a) && t.is_linked(&b) && t.is_linked(&root));
        t.rename(&a, ROOT_INO, "a");
        assert!(t.is_linked(&a), "renaming onto its own name keeps it");
        t.rename(&a, ROOT_INO, "b");
        assert!(t.is_linked(&a));
        assert!(!t.is_linked(&b), "the replaced file lost its name");
        assert!(t.child(ROOT_INO, "a").is_none());
        t.unlink_child(ROOT_INO, "b", a.ino);
        assert!(!t.is_linked(&a));
    }

    #[test]
    fn kind_change_gets_a_new_inode() {
        let t = InodeTable::new("");
        let root = t.get(ROOT_INO).unwrap();
        let f = t.upsert_child(&root, "x", Kind::File);
        let d = t.upsert_child(&root, "x", Kind::Directory);
        assert_ne!(f.ino, d.ino);
        assert_eq!(t.child(ROOT_INO, "x").unwrap().kind, Kind::Directory);
    }

    #[test]
    fn forget_removes_after_the_last_reference() {
        let t = InodeTable::new("");
        let root = t.get(ROOT_INO).unwrap();
        let f = t.upsert_child(&root, "x", Kind::File);
        t.remember(&f);
        t.remember(&f);
        let ino = f.ino;
        drop(f);
        t.forget(ino, 1);
        assert!(t.get(ino).is_some());
        t.forget(ino, 1);
        assert!(t.get(ino).is_none());
        assert!(t.child(ROOT_INO, "x").is_none());
        t.forget(ROOT_INO, 5);
        assert!(t.get(ROOT_INO).is_some());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_inode_held_by_an_operation_under_way_outlives_forget_until_a_prune() {
        let t = InodeTable::new("");
        let root = t.get(ROOT_INO).unwrap();
        let f = t.upsert_child(&root, "x", Kind::File);
        t.remember(&f);
        t.forget(f.ino, 1);
        // A lookup found it before the forget and is about to remember it.
        assert_eq!(t.child(ROOT_INO, "x").unwrap().ino, f.ino);
        let ino = f.ino;
        drop(f);
        assert_eq!(t.prune(|_| false), 1);
        assert!(t.get(ino).is_none());
    }

    /// root/a/b/{f, g}, root/c/h, root/k.
    fn tree(t: &InodeTable) -> [u64; 7] {
        let root = t.get(ROOT_INO).unwrap();
        let a = t.upsert_child(&root, "a", Kind::Directory);
        let b = t.upsert_child(&a, "b", Kind::Directory);
        let f = t.upsert_child(&b, "f", Kind::File);
        let g = t.upsert_child(&b, "g", Kind::File);
        let c = t.upsert_child(&root, "c", Kind::Directory);
        let h = t.upsert_child(&c, "h", Kind::File);
        let k = t.upsert_child(&root, "k", Kind::File);
        [a.ino, b.ino, f.ino, g.ino, c.ino, h.ino, k.ino]
    }

    #[test]
    fn prune_removes_unreferenced_leaves_then_the_directories_they_leave_empty() {
        let t = InodeTable::new("");
        let [a, b, f, g, c, h, k] = tree(&t);
        assert_eq!(t.len(), 8);
        assert_eq!(t.prune(|_| false), 7);
        for ino in [a, b, f, g, c, h, k] {
            assert!(t.get(ino).is_none());
        }
        assert!(t.children_of(ROOT_INO).is_empty());
        assert_eq!(t.len(), 1);
        assert!(t.get(ROOT_INO).is_some());
    }

    #[test]
    fn prune_keeps_referenced_inodes_their_ancestors_and_what_keep_says() {
        let t = InodeTable::new("");
        let [a, b, f, g, c, h, k] = tree(&t);
        t.remember(&t.get(f).unwrap());
        assert_eq!(t.prune(|ino| ino == h), 2, "g and k");
        for ino in [a, b, f, c, h] {
            assert!(t.get(ino).is_some());
        }
        assert!(t.get(g).is_none() && t.get(k).is_none());
        let f = t.get(f).unwrap();
        assert_eq!(t.key_of(&f).unwrap(), "a/b/f");
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn prune_leaves_a_directory_unlisted_and_its_listing_from_before_is_not_complete() {
        let t = InodeTable::new("");
        let [a, b, f, ..] = tree(&t);
        let (a, b) = (t.get(a).unwrap(), t.get(b).unwrap());
        let began = Instant::now();
        a.mark_listed(began);
        b.mark_listed(began);
        t.remember(&t.get(f).unwrap());
        t.prune(|_| false);
        assert!(a.listed_within(Duration::from_secs(60)), "a lost no child");
        assert!(!b.listed_within(Duration::from_secs(60)), "b lost g");
        // A listing that was under way when g went does not count as complete.
        b.mark_listed(began);
        assert!(!b.listed_within(Duration::from_secs(60)));
        b.mark_listed(Instant::now());
        assert!(b.listed_within(Duration::from_secs(60)));
    }
}
