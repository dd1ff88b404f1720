//! The inode table: inode number <-> (parent, name) <-> object key, with the kernel's
//! lookup counts. Both maps are sharded (dashmap); no lock is held across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::attr::{Kind, ObjectStat};

pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
pub struct Inode {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// The object key of a file; the prefix (with its trailing `/`) of a directory.
    pub key: String,
    pub kind: Kind,
    state: Mutex<InodeState>,
}

#[derive(Debug)]
struct InodeState {
    stat: ObjectStat,
    /// When the store last confirmed `stat`; `None` forces a revalidation.
    validated: Option<Instant>,
    lookups: u64,
}

impl Inode {
    pub fn stat(&self) -> ObjectStat {
        self.state.lock().stat.clone()
    }

    /// The stat, if the store confirmed it less than `ttl` ago.
    pub fn fresh_stat(&self, ttl: std::time::Duration) -> Option<ObjectStat> {
        let s = self.state.lock();
        s.validated.filter(|t| t.elapsed() < ttl).map(|_| s.stat.clone())
    }

    pub fn set_stat(&self, stat: ObjectStat) {
        let mut s = self.state.lock();
        s.stat = stat;
        s.validated = Some(Instant::now());
    }

    /// A listing knows size, time and ETag but not the POSIX metadata: keep what a HEAD
    /// found while the object is still the same version (metadata only changes with one).
    pub fn set_listed_stat(&self, listed: ObjectStat) {
        let mut s = self.state.lock();
        let posix = if s.stat.same_version(&listed) { s.stat.posix } else { Default::default() };
        s.stat = ObjectStat { posix, ..listed };
        s.validated = Some(Instant::now());
    }
}

pub struct InodeTable {
    inodes: DashMap<u64, Arc<Inode>>,
    children: DashMap<(u64, String), u64>,
    next_ino: AtomicU64,
}

impl InodeTable {
    pub fn new(root_prefix: &str) -> InodeTable {
        let table = InodeTable { inodes: DashMap::new(), children: DashMap::new(), next_ino: AtomicU64::new(ROOT_INO + 1) };
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            key: root_prefix.to_string(),
            kind: Kind::Directory,
            state: Mutex::new(InodeState { stat: ObjectStat::default(), validated: None, lookups: 1 }),
        };
        table.inodes.insert(ROOT_INO, Arc::new(root));
        table
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.inodes.get(&ino).map(|e| e.value().clone())
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<Arc<Inode>> {
        let ino = *self.children.get(&(parent, name.to_string()))?;
        self.get(ino)
    }

    /// The inode for `name` in `parent` with this kind, made if needed. A name whose kind
    /// changed (a file replaced by a directory) gets a new inode number.
    pub fn upsert_child(&self, parent: &Inode, name: &str, kind: Kind) -> Arc<Inode> {
        let slot = self.children.entry((parent.ino, name.to_string()));
        if let dashmap::Entry::Occupied(e) = &slot {
            if let Some(existing) = self.get(*e.get()) {
                if existing.kind == kind {
                    return existing;
                }
            }
        }
        let key = match kind {
            Kind::File => format!("{}{name}", parent.key),
            Kind::Directory => format!("{}{name}/", parent.key),
        };
        let inode = Arc::new(Inode {
            ino: self.next_ino.fetch_add(1, Ordering::Relaxed),
            parent: parent.ino,
            name: name.to_string(),
            key,
            kind,
            state: Mutex::new(InodeState { stat: ObjectStat::default(), validated: None, lookups: 0 }),
        });
        self.inodes.insert(inode.ino, inode.clone());
        slot.insert(inode.ino);
        inode
    }

    /// The kernel now holds one more reference (a lookup, create or readdirplus entry).
    pub fn remember(&self, inode: &Inode) {
        inode.state.lock().lookups += 1;
    }

    /// The kernel dropped `n` references; the inode goes once none are left.
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
        if gone {
            self.inodes.remove(&ino);
            self.children.remove_if(&(inode.parent, inode.name.clone()), |_, v| *v == ino);
        }
    }

    /// Drops a child that the store says is gone, so the next lookup asks again.
    pub fn unlink_child(&self, parent: u64, name: &str, ino: u64) {
        self.children.remove_if(&(parent, name.to_string()), |_, v| *v == ino);
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_stable_numbers_and_keys() {
        let t = InodeTable::new("pre/");
        let root = t.get(ROOT_INO).unwrap();
        let d = t.upsert_child(&root, "d", Kind::Directory);
        assert_eq!(d.key, "pre/d/");
        let f = t.upsert_child(&d, "f", Kind::File);
        assert_eq!(f.key, "pre/d/f");
        assert_eq!(t.upsert_child(&d, "f", Kind::File).ino, f.ino);
        assert_eq!(t.child(d.ino, "f").unwrap().ino, f.ino);
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
        t.forget(f.ino, 1);
        assert!(t.get(f.ino).is_some());
        t.forget(f.ino, 1);
        assert!(t.get(f.ino).is_none());
        assert!(t.child(ROOT_INO, "x").is_none());
        t.forget(ROOT_INO, 5);
        assert!(t.get(ROOT_INO).is_some());
    }
}
