//! The writer of every file open for writing. As on a local disk, a file has one content
//! however many descriptors write it: they share one writer (one staging file), so each
//! sees the others' writes, and the object is stored from that one view. The writer ends
//! with the last descriptor's release.

use dashmap::DashMap;

use crate::write::WriterHandle;

struct Shared {
    writer: WriterHandle,
    /// Descriptors open on it.
    handles: usize,
}

#[derive(Default)]
pub struct Writers {
    by_inode: DashMap<u64, Shared>,
    /// Writers of files that lost their name while open: they store nothing, but their
    /// data is the file's for every descriptor still open on it.
    orphaned: DashMap<u64, Shared>,
}

/// What [`Writers::attach`] found.
pub enum Attach {
    /// The file's writer, shared with the descriptors already open.
    Joined(WriterHandle),
    /// A new writer, the file's first.
    Spawned(WriterHandle),
    /// The last descriptor was released and the writer is storing the file: wait for it
    /// to end, then attach again.
    Closing(WriterHandle),
}

impl Writers {
    /// The file's writer for one more descriptor.
    pub fn attach<E>(&self, ino: u64, spawn: impl FnOnce() -> Result<WriterHandle, E>) -> Result<Attach, E> {
        // An unlinked file reopened (through /proc/PID/fd) is still that file.
        if let Some(mut orphan) = self.orphaned.get_mut(&ino) {
            orphan.handles += 1;
            return Ok(Attach::Joined(orphan.writer.clone()));
        }
        match self.by_inode.entry(ino) {
            dashmap::Entry::Occupied(e) if e.get().handles == 0 => Ok(Attach::Closing(e.get().writer.clone())),
            dashmap::Entry::Occupied(mut e) => {
                e.get_mut().handles += 1;
                Ok(Attach::Joined(e.get().writer.clone()))
            }
            dashmap::Entry::Vacant(v) => {
                let writer = spawn()?;
                v.insert(Shared { writer: writer.clone(), handles: 1 });
                Ok(Attach::Spawned(writer))
            }
        }
    }

    /// One descriptor of `writer` was released; true when it was the last, and the writer
    /// is to close. It stays the file's writer until [`Writers::closed`].
    pub fn release(&self, ino: u64, writer: &WriterHandle) -> bool {
        for map in [&self.by_inode, &self.orphaned] {
            if let Some(mut shared) = map.get_mut(&ino).filter(|s| s.writer.same(writer)) {
                shared.handles = shared.handles.saturating_sub(1);
                return shared.handles == 0;
            }
        }
        // Not registered: nobody else holds it.
        true
    }

    /// `writer` has closed: the store holds what it wrote, or it failed.
    pub fn closed(&self, ino: u64, writer: &WriterHandle) {
        for map in [&self.by_inode, &self.orphaned] {
            map.remove_if(&ino, |_, s| s.writer.same(writer) && s.handles == 0);
        }
    }

    /// Waits until `writer`'s task has ended, and forgets it: an open retried after this
    /// finds it gone, not closing (waiting on it again would not wait at all, and the
    /// retries would spin until the releasing side got to forget it).
    pub async fn ended(&self, ino: u64, writer: &WriterHandle) {
        writer.ended().await;
        self.closed(ino, writer);
    }

    /// The writer whose data stat and reads show.
    pub fn of(&self, ino: u64) -> Option<WriterHandle> {
        let get = |map: &DashMap<u64, Shared>| map.get(&ino).map(|s| s.writer.clone());
        get(&self.by_inode).or_else(|| get(&self.orphaned))
    }

    /// The file lost its name: its writer only serves the descriptors still open on it.
    pub fn orphan(&self, ino: u64) -> Option<WriterHandle> {
        let (_, shared) = self.by_inode.remove(&ino)?;
        let writer = shared.writer.clone();
        self.orphaned.insert(ino, shared);
        Some(writer)
    }

    /// `writer` holds the bytes of a file about to lose its name while descriptors read
    /// it (none writes it): it serves them as an orphan's, and ends with the last one.
    /// False when the file has a writer already.
    pub fn hold(&self, ino: u64, writer: WriterHandle) -> bool {
        if self.by_inode.contains_key(&ino) {
            return false;
        }
        match self.orphaned.entry(ino) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(Shared { writer, handles: 0 });
                true
            }
        }
    }

    /// The writer of an unlinked file once no descriptor writes it any more (it is kept
    /// while descriptors read its data).
    pub fn idle_orphan(&self, ino: u64) -> Option<WriterHandle> {
        self.orphaned.get(&ino).filter(|o| o.handles == 0).map(|o| o.writer.clone())
    }

    pub fn is_orphan(&self, ino: u64) -> bool {
        self.orphaned.contains_key(&ino)
    }

    /// Whether the file (still named) is open for writing.
    pub fn is_written(&self, ino: u64) -> bool {
        self.by_inode.contains_key(&ino)
    }

    /// Lets every writer go (the session ended): see [`crate::fs::Fs::end_session`].
    pub fn clear(&self) {
        self.by_inode.clear();
        self.orphaned.clear();
    }

    /// The inodes being written now.
    pub fn inodes(&self) -> Vec<u64> {
        self.by_inode.iter().map(|e| *e.key()).collect()
    }
}
