//! Making and removing names: directories (markers), symlinks, files.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::attr::{Attr, Kind, ObjectStat, PosixMeta};
use super::error::FsError;
use super::{content_type_for, posix_metadata, unless_closed, Fs};
use crate::store::PutOptions;

impl Fs {
    /// Makes a directory: a `name/` marker object carrying its attributes.
    pub async fn mkdir(&self, parent: u64, name: &str, perm: u16, uid: u32, gid: u32) -> Result<Attr, FsError> {
        let dir = self.writable_dir(parent, name)?;
        if let Some(account) = self.account_top(parent) {
            return self.make_bucket(account, &dir, name).await;
        }
        let checked = Instant::now();
        if self.find_child(&dir, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        let key = format!("{}{name}/", self.key(&dir)?);
        let opts = self.marker_options(libc::S_IFDIR | u32::from(perm), uid, gid, SystemTime::now());
        self.client.put_object(&key, Bytes::new(), &opts).await?;
        let inode = self.made_here(&dir, name, Kind::Directory);
        inode.set_stat(ObjectStat { posix: PosixMeta::from_metadata(&opts.metadata), ..ObjectStat::default() });
        // Nothing was below the name when it was checked: the new directory is known to
        // be empty as of then, as if listed, so the files put in it next cost no lookups.
        inode.mark_listed(checked);
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// How a `dir/` marker is stored: empty, with the directory's attributes.
    pub(super) fn marker_options(&self, mode: u32, uid: u32, gid: u32, mtime: SystemTime) -> PutOptions {
        let posix = PosixMeta::made(mode, uid, gid, mtime);
        self.upload_defaults.options(Some("application/x-directory".into()), posix_metadata(&posix))
    }

    /// symlink(2), stored as s3fs does: an object whose body is the target and whose
    /// mode is S_IFLNK|0777.
    pub async fn symlink(&self, parent: u64, name: &str, target: &str, uid: u32, gid: u32) -> Result<Attr, FsError> {
        let posix = PosixMeta::made(libc::S_IFLNK | 0o777, uid, gid, SystemTime::now());
        self.make_object(parent, name, posix, Bytes::copy_from_slice(target.as_bytes())).await
    }

    /// mknod(2) and mkfifo(3), stored as s3fs does: an empty object whose mode carries the
    /// file type (FIFO, socket, character or block device, or a regular file) and, for a
    /// device, `x-amz-meta-rdev`. The kernel gives FIFOs, sockets and devices their
    /// behaviour; the store only keeps that they exist.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, FsError> {
        let mut posix = PosixMeta::made(mode, uid, gid, SystemTime::now());
        let file_type = mode & libc::S_IFMT;
        if file_type == libc::S_IFCHR || file_type == libc::S_IFBLK {
            posix.rdev = Some(rdev);
        }
        match file_type {
            libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => {
                self.make_object(parent, name, posix, Bytes::new()).await
            }
            _ => Err(FsError::InvalidName),
        }
    }

    /// Stores a new object `name` in `parent` in one PUT, with these attributes.
    async fn make_object(&self, parent: u64, name: &str, posix: PosixMeta, body: Bytes) -> Result<Attr, FsError> {
        let dir = self.writable_dir(parent, name)?;
        self.refuse_at_top(parent)?;
        if self.find_child(&dir, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        let key = format!("{}{name}", self.key(&dir)?);
        let content_type = (posix.object_kind() == Kind::File).then(|| content_type_for(name)).flatten();
        let opts = self.upload_defaults.options(content_type, posix_metadata(&posix));
        let size = body.len() as u64;
        let etag = self.client.put_object(&key, body, &opts).await?;
        let inode = self.made_here(&dir, name, posix.object_kind());
        inode.set_stat(ObjectStat { size, last_modified: posix.mtime, etag, posix });
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// readlink(2): the body of the symlink's object.
    pub async fn readlink(&self, ino: u64) -> Result<Bytes, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Symlink {
            return Err(FsError::NotSymlink);
        }
        let size = inode.stat().size;
        if size == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.client.get_range(&self.key(&inode)?, 0..size).await?)
    }

    /// Removes a file. One still open for writing keeps working for its descriptors but is
    /// not stored when closed.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        // The kernel resolved the name just now: no need to ask the store again (deleting
        // a key someone else removed meanwhile is harmless).
        let child = match self.inodes.child(parent, name) {
            Some(known) => known,
            None => self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?,
        };
        if child.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        let held = match self.writers.orphan(child.ino) {
            Some(writer) => {
                unless_closed(writer.discard().await)?;
                None
            }
            None => self.keep_for_readers(&child).await,
        };
        self.client.delete_object(&self.key(&child)?).await?;
        if let Some(held) = held {
            unless_closed(held.discard().await)?;
        }
        self.inodes.unlink_child(parent, name, child.ino);
        Ok(())
    }

    /// Removes an empty directory (its marker, if it has one).
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        let child = self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?;
        if child.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        let prefix = self.key(&child)?;
        if !self.stored_dir_is_empty(&prefix).await?
            || self
                .writers
                .inodes()
                .into_iter()
                .any(|ino| self.inodes.get(ino).is_some_and(|i| i.parent() == child.ino))
        {
            return Err(FsError::NotEmpty);
        }
        match self.account_top(parent) {
            Some(account) => self.remove_bucket(account, name).await?,
            None => self.client.delete_object(&prefix).await?,
        }
        self.inodes.unlink_child(parent, name, child.ino);
        Ok(())
    }

    /// Whether nothing but the directory's own marker is stored under `prefix`.
    pub(super) async fn stored_dir_is_empty(&self, prefix: &str) -> Result<bool, FsError> {
        let page = self.client.list_page(prefix, None, 2).await?;
        Ok(page.common_prefixes.is_empty() && page.objects.iter().all(|o| o.key == prefix))
    }
}
