//! rename(2): a file is a server-side copy and a delete; a directory moves every key
//! below it, deleting the sources only once every copy succeeded.

use super::attr::Kind;
use super::error::FsError;
use super::inode::Inode;
use super::{rewrite_options, unless_closed, Fs};
use crate::store::{ErrorKind, ObjectError, ObjectInfo, PutOptions};
use crate::write::{multipart_copy, BaseObject, WriterHandle};

/// Objects copied at once when a directory is renamed.
const RENAME_CONCURRENCY: usize = 16;

impl Fs {
    /// rename(2). A file is copied on the server (keeping its metadata; Content-Type from
    /// the new name) and the old key deleted; a directory moves every key below it, the
    /// sources deleted only once all copies succeeded. Not atomic: a failure leaves every
    /// object reachable under its old or its new name, and reports EIO.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        let new_dir = self.writable_dir(new_parent, new_name)?;
        self.check_rename_between(&dir, &new_dir)?;
        let src = self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?;
        let dst = self.find_child(&new_dir, new_name).await?;
        if let Some(dst) = &dst {
            if dst.ino == src.ino {
                return Ok(());
            }
            if no_replace {
                return Err(FsError::Exists);
            }
            match (src.kind == Kind::Directory, dst.kind == Kind::Directory) {
                (false, true) => return Err(FsError::IsDirectory),
                (true, false) => return Err(FsError::NotDirectory),
                (true, true) => {
                    if !self.stored_dir_is_empty(&self.key(dst)?).await? {
                        return Err(FsError::NotEmpty);
                    }
                }
                (false, false) => {}
            }
        }
        let new_key = format!("{}{new_name}", self.key(&new_dir)?);
        // The replaced file's descriptors keep its bytes once its object is overwritten.
        let held = match dst.as_ref().map(|d| (d, self.writer_of(d.ino))) {
            Some((_, Some(writer))) => {
                unless_closed(writer.keep_base().await)?;
                None
            }
            Some((dst, None)) => self.keep_for_readers(dst).await,
            None => None,
        };
        match src.kind {
            Kind::Directory => self.rename_dir(&src, &format!("{new_key}/")).await?,
            Kind::File | Kind::Symlink | Kind::Special(_) => self.rename_file(&src, &new_key).await?,
        }
        // A file replaced by the rename must not come back when its writer closes.
        if let Some(replaced) = dst.and_then(|d| self.writers.orphan(d.ino)).or(held) {
            unless_closed(replaced.discard().await)?;
        }
        self.name_appeared(new_parent, new_name);
        self.inodes.rename(&src, new_parent, new_name);
        Ok(())
    }

    pub(super) async fn rename_file(&self, src: &Inode, new_key: &str) -> Result<(), FsError> {
        let old_key = self.key(src)?;
        // A writer released just before the rename (close, then rename, as rsync does) may
        // have ended meanwhile: its close already stored everything, so there is no writer.
        let writer = self.writer_of(src.ino);
        // What is written so far is stored first, so the copy carries it.
        if let Some(writer) = &writer {
            if let Some(uploaded) = unless_closed(writer.flush().await)?.flatten() {
                self.record_upload(src.ino, uploaded);
            }
        }
        // The copy gets no ACL of its own: the object's is asked for with the HEAD.
        let (info, kept) = tokio::join!(self.client.head_object(&old_key), self.kept(&old_key, false));
        let info = info?;
        let mut opts = rewrite_options(&self.upload_defaults, new_key, &info);
        kept.apply(&mut opts);
        let etag = self.copy(&old_key, &info, new_key, Some(&opts)).await?;
        self.client.delete_object(&old_key).await?;
        self.moved(src, writer, new_key, BaseObject { etag, size: info.size }).await
    }

    /// A file's object now stands under `new_key` as `version`: its writer (if any) goes
    /// on over that version, and its readers follow.
    async fn moved(
        &self,
        inode: &Inode,
        writer: Option<WriterHandle>,
        new_key: &str,
        version: BaseObject,
    ) -> Result<(), FsError> {
        let etag = version.etag.clone();
        if let Some(writer) = writer {
            unless_closed(writer.rekey(new_key.to_string(), version).await)?;
        }
        let mut stat = inode.stat();
        stat.etag = etag;
        inode.set_stat(stat);
        self.facts.forget(inode.ino);
        self.readers_follow(inode.ino);
        Ok(())
    }

    /// One object to another name on the server: CopyObject, or part by part above the
    /// copy threshold. `opts` replaces the metadata; `None` keeps it.
    pub(super) async fn copy(
        &self,
        from: &str,
        info: &ObjectInfo,
        to: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, FsError> {
        if info.size <= self.write_cfg.copy_threshold {
            return Ok(self.client.copy_object(from, info.etag.as_deref(), to, opts).await?);
        }
        let etag = info.etag.as_deref().ok_or(FsError::NotSupported)?;
        // A part copy starts a new upload, which must be given the metadata, tags and ACL
        // to keep.
        let mut opts = opts.cloned().unwrap_or_else(|| rewrite_options(&self.upload_defaults, to, info));
        if opts.tags.is_none() {
            self.kept(from, true).await.apply(&mut opts);
        }
        Ok(multipart_copy(self.client.clone(), &self.write_cfg, from, etag, to, info.size, &opts).await?)
    }

    pub(super) async fn rename_dir(&self, src: &Inode, new_prefix: &str) -> Result<(), FsError> {
        let old_prefix = self.key(src)?;
        // Files below still being written are stored first, so that the copies carry
        // them, and go on under their new names, as a renamed file does. (A writer that
        // ended meanwhile stored its file before it did.)
        let mut writing = Vec::new();
        for ino in self.writers.inodes() {
            let Some(inode) = self.inodes.get(ino) else { continue };
            let key = self.inodes.key_of(&inode).filter(|k| k.starts_with(&old_prefix));
            let (Some(key), Some(writer)) = (key, self.writer_of(ino)) else { continue };
            if let Some(uploaded) = unless_closed(writer.flush().await)? {
                if let Some(uploaded) = uploaded {
                    self.record_upload(ino, uploaded);
                }
                writing.push((inode, writer, format!("{new_prefix}{}", &key[old_prefix.len()..])));
            }
        }
        let objects = self.client.list_all(&old_prefix).await?;
        if objects.is_empty() {
            // A directory that exists only here (made, nothing stored below): nothing to move.
            return Ok(());
        }
        let mut copies = tokio::task::JoinSet::new();
        let mut failed = None;
        for object in &objects {
            while copies.len() >= RENAME_CONCURRENCY {
                if let Some(Ok(Err(e))) = copies.join_next().await {
                    failed.get_or_insert(e);
                }
            }
            let to = format!("{new_prefix}{}", &object.key[old_prefix.len()..]);
            let (from, etag, client) = (object.key.clone(), object.etag.clone(), self.client.clone());
            if object.size > self.write_cfg.copy_threshold {
                // Part copies need the metadata up front: ask for it and copy inline.
                let info = self.client.head_object(&from).await?;
                if let Err(e) = self.copy(&from, &info, &to, None).await {
                    failed.get_or_insert(e);
                }
                continue;
            }
            copies.spawn(async move {
                client.copy_object(&from, etag.as_deref(), &to, None).await.map(drop).map_err(FsError::from)
            });
        }
        while let Some(done) = copies.join_next().await {
            if let Ok(Err(e)) = done {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            tracing::error!(from = %old_prefix, to = %new_prefix, "directory rename failed while copying; every object is still under the old name: {e}");
            return Err(e);
        }
        let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        for batch in keys.chunks(1000) {
            let failures = self.client.delete_objects(batch).await?;
            if let Some((key, why)) = failures.first() {
                tracing::error!(from = %old_prefix, to = %new_prefix, "directory rename copied everything but could not delete {} old key(s), e.g. {key}: {why}", failures.len());
                return Err(ObjectError::new(ErrorKind::Rejected, "DeleteObjects", key.as_str())
                    .with_message(why.as_str())
                    .into());
            }
        }
        for (inode, writer, new_key) in writing {
            let info = self.client.head_object(&new_key).await?;
            self.moved(&inode, Some(writer), &new_key, BaseObject { etag: info.etag, size: info.size }).await?;
        }
        Ok(())
    }
}
