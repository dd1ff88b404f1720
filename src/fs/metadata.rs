//! Attributes and extended attributes: chmod, chown, utimens, truncate, xattrs, stored in
//! the object's metadata by copying it onto itself (or with the upload of a file being
//! written).

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;

use super::attr::{Attr, Kind, ObjectStat, PosixMeta};
use super::error::FsError;
use super::inode::Inode;
use super::{rewrite_options, unless_closed, Fs};
use super::{xattr, xos, AttrChange, Changer};
use crate::store::{ErrorKind, ObjectInfo, PutOptions};
use crate::times::format_time;
use crate::write::{BaseObject, MetaChange, MAX_SINGLE_COPY};

impl Fs {
    /// chmod, chown, utimens: kept in the s3fs-compatible metadata. A file being written
    /// stores them with its upload; any other file is copied onto itself with the new
    /// metadata (the object is otherwise unchanged).
    pub async fn set_attributes(&self, ino: u64, by: Changer, mut change: AttrChange) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        let current = self.attr_of(&inode);
        if std::mem::take(&mut change.drop_set_id) && inode.kind != Kind::Directory {
            let perm = change.mode.unwrap_or(current.perm);
            let dropped = without_set_id(perm);
            if dropped != perm {
                change.mode = Some(dropped);
            }
        }
        if change.is_empty() {
            return Ok(current);
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        self.changed_by(ino, by);
        let mut stat = inode.stat();
        let type_bits = match inode.kind {
            Kind::Directory => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::File => libc::S_IFREG,
            Kind::Special(type_bits) => type_bits,
        };
        let mode = type_bits | u32::from(change.mode.unwrap_or(current.perm));
        let meta = MetaChange {
            mode: Some(mode),
            uid: change.uid.or(Some(current.uid)),
            gid: change.gid.or(Some(current.gid)),
            mtime: change.mtime,
            atime: change.atime,
        };
        // Stored with the upload of a file being written; a writer closed meanwhile has
        // uploaded already, so the attributes then go on the stored object.
        let by_writer = match self.writer_of(ino) {
            Some(writer) => unless_closed(writer.set_meta(meta).await)?,
            // No object to keep them in: they hold for as long as the mount (so that tar,
            // rsync -a and cp -a into the mount root succeed).
            None if self.is_bucket_root(&inode) => Some(()),
            None => None,
        };
        match by_writer {
            Some(()) => {}
            None => {
                let uid = meta.uid.unwrap_or(current.uid);
                let gid = meta.gid.unwrap_or(current.gid);
                self.rewrite_metadata(&inode, |info| {
                    let metadata = &mut info.metadata;
                    metadata.insert("mode".into(), mode.to_string());
                    metadata.insert("uid".into(), uid.to_string());
                    metadata.insert("gid".into(), gid.to_string());
                    // The copy changes Last-Modified: keep the time shown unless it changes.
                    let mtime = change.mtime.or(PosixMeta::from_metadata(metadata).mtime).or(info.last_modified);
                    if let Some(t) = mtime {
                        metadata.insert("mtime".into(), format_time(t));
                    }
                    // atime only when set (as with noatime), and the change itself.
                    if let Some(t) = change.atime {
                        metadata.insert("atime".into(), format_time(t));
                    }
                    metadata.insert("ctime".into(), format_time(SystemTime::now()));
                    Ok(())
                })
                .await?;
                return Ok(self.attr_of(&inode));
            }
        }
        stat.posix.mode = meta.mode;
        stat.posix.uid = meta.uid;
        stat.posix.gid = meta.gid;
        if let Some(t) = change.mtime {
            stat.posix.mtime = Some(t);
        }
        if let Some(t) = change.atime {
            stat.posix.atime = Some(t);
        }
        inode.set_stat(stat);
        Ok(self.attr_of(&inode))
    }

    /// truncate(2)/ftruncate(2): through the file's writer, or as a one-off rewrite.
    pub async fn set_size(&self, ino: u64, by: Changer, size: u64) -> Result<Attr, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        self.changed_by(ino, by);
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        let by_writer = match self.writer_of(ino) {
            Some(writer) => unless_closed(writer.truncate(size).await)?,
            None => None,
        };
        match by_writer {
            Some(()) => {}
            None => {
                let key = self.key(&inode)?;
                let (stored, kept) = tokio::join!(self.revalidate(&inode), self.kept(&key, true));
                let stored = stored?;
                let base = (size > 0).then(|| BaseObject { etag: stored.etag.clone(), size: stored.size });
                let writer = self.spawn_writer(&inode, base, Some(&stored), kept)?;
                writer.truncate(size).await?;
                if let Some(uploaded) = writer.close().await? {
                    self.record_upload(ino, uploaded);
                }
            }
        }
        Ok(self.attr_of(&inode))
    }

    /// Clears set-user/group-ID as a write or truncate by a process without CAP_FSETID
    /// does ([`AttrChange::drop_set_id`]); true when there were bits to clear (what the
    /// kernel has cached of the file's mode is then out of date).
    pub async fn drop_set_id(&self, ino: u64, by: Changer) -> Result<bool, FsError> {
        let inode = self.inode(ino)?;
        let perm = self.attr_of(&inode).perm;
        if inode.kind == Kind::Directory || without_set_id(perm) == perm {
            return Ok(false);
        }
        self.set_attributes(ino, by, AttrChange { drop_set_id: true, ..AttrChange::default() }).await?;
        Ok(true)
    }

    /// Copies the object of `inode` onto itself with its metadata (and Content-Type)
    /// changed by `edit`, the data untouched. A directory without a marker gets one, with
    /// its current attributes, to hold the metadata.
    pub(super) async fn rewrite_metadata(
        &self,
        inode: &Inode,
        edit: impl FnOnce(&mut ObjectInfo) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        if self.is_bucket_root(inode) {
            return Err(FsError::BucketRoot);
        }
        let key = self.key(inode)?;
        // A copy keeps the tags but gets no ACL: the object's is asked for with the HEAD.
        let (info, kept) = tokio::join!(self.stored_info(inode), self.kept(&key, false));
        let Some(mut info) = info? else {
            let current = self.attr_of(inode);
            let dir_mode = libc::S_IFDIR | u32::from(current.perm);
            let opts = self.marker_options(dir_mode, current.uid, current.gid, current.mtime);
            let mut info = ObjectInfo {
                size: 0,
                content_type: opts.content_type.clone(),
                last_modified: Some(current.mtime),
                etag: None,
                storage_class: None,
                metadata: opts.metadata.clone(),
                version_id: None,
            };
            edit(&mut info)?;
            let opts = PutOptions { metadata: info.metadata, ..opts };
            let etag = self.client.put_object(&key, Bytes::new(), &opts).await?;
            let posix = PosixMeta::from_metadata(&opts.metadata);
            inode.set_stat(ObjectStat { etag, posix, ..ObjectStat::default() });
            self.facts.forget(inode.ino);
            return Ok(());
        };
        if info.size > MAX_SINGLE_COPY {
            return Err(FsError::NotSupported);
        }
        let source_etag = info.etag.clone();
        edit(&mut info)?;
        if info.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > xattr::METADATA_LIMIT {
            return Err(FsError::AttributesTooBig);
        }
        // Exactly the Content-Type the edit left, generic or not.
        let mut opts = PutOptions {
            content_type: info.content_type.clone(),
            ..rewrite_options(&self.upload_defaults, &key, &info)
        };
        kept.apply(&mut opts);
        let etag = self.client.copy_object(&key, source_etag.as_deref(), &key, Some(&opts)).await?;
        inode.set_stat(ObjectStat {
            size: info.size,
            last_modified: Some(SystemTime::now()),
            etag,
            posix: PosixMeta::from_metadata(&info.metadata),
        });
        self.readers_follow(inode.ino);
        self.facts.forget(inode.ino);
        Ok(())
    }

    /// The object's metadata as stored now; `None` for a directory without a marker.
    pub(super) async fn stored_info(&self, inode: &Inode) -> Result<Option<ObjectInfo>, FsError> {
        let key = self.key(inode)?;
        // The root of a whole-bucket mount is no object.
        if key.is_empty() {
            return Ok(None);
        }
        match self.client.head_object(&key).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is(ErrorKind::NotFound) && inode.kind == Kind::Directory => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether no file here can have the attribute `name`: only `user.*` ones are kept.
    /// `ls -l` and `cp` ask for security.* and system.posix_acl_* of every file; the
    /// answer needs neither the file nor a wait (so it ends at the first poll).
    fn never_has_xattr(name: &str) -> bool {
        !name.starts_with("user.")
    }

    /// getxattr(2): a stored user attribute, or one of the `user.xos.` views (xos.rs).
    pub async fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, FsError> {
        let inode = self.inode(ino)?;
        if Fs::never_has_xattr(name) {
            return Err(FsError::NoAttribute);
        }
        if name.starts_with(xos::NAMESPACE) {
            return self.xos_get(&inode, name).await;
        }
        let metadata = match self.pending_options(ino).await? {
            Some(opts) => opts.metadata,
            None => self.stored_metadata(&inode).await?.ok_or(FsError::NoAttribute)?,
        };
        stored_xattrs(&metadata).remove(name).ok_or(FsError::NoAttribute)
    }

    /// listxattr(2): the stored user attributes and the listed `user.xos.` views.
    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>, FsError> {
        let inode = self.inode(ino)?;
        // First: it fetches the object's HEAD, tags and ACL at once, which the rest reads.
        let mut names = self.xos_listed(&inode).await?;
        let metadata = match self.pending_options(ino).await? {
            Some(opts) => opts.metadata,
            None => self.stored_metadata(&inode).await?.unwrap_or_default(),
        };
        names.extend(stored_xattrs(&metadata).into_keys());
        Ok(names)
    }

    /// setxattr(2) (`create`: XATTR_CREATE, `replace`: XATTR_REPLACE) and removexattr(2)
    /// (`value` None). Only user attributes; `user.xos.` names change what the store keeps
    /// beside the object (xos.rs). Others are stored by copying the object onto itself
    /// with the new metadata.
    pub async fn change_xattr(
        &self,
        ino: u64,
        name: &str,
        value: Option<&[u8]>,
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let inode = self.inode(ino)?;
        if !name.starts_with("user.") {
            return Err(FsError::OtherNamespace);
        }
        if name.starts_with(xos::NAMESPACE) {
            return self.xos_change(&inode, name, value).await;
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if let Some(writer) = self.writer_of(ino) {
            // A file being written stores its xattrs with its upload (cp -a and rsync -X
            // set them on the open copy). The kernel serializes xattr changes of a file.
            if let Some(opts) = unless_closed(writer.options().await)? {
                let mut metadata = opts.metadata;
                edit_xattr(&mut metadata, name, value, create, replace)?;
                let stored = metadata.remove(xattr::METADATA_KEY);
                let edit: crate::write::OptionsEdit = Box::new(move |opts| match stored {
                    Some(v) => drop(opts.metadata.insert(xattr::METADATA_KEY.into(), v)),
                    None => drop(opts.metadata.remove(xattr::METADATA_KEY)),
                });
                if unless_closed(writer.edit_options(edit).await)?.is_some() {
                    return Ok(());
                }
            }
            // Its close stored the file just now (rsync sets xattrs right after the close):
            // the change goes to the stored object.
            self.writers.ended(ino, &writer).await;
        }
        self.rewrite_metadata(&inode, |info| edit_xattr(&mut info.metadata, name, value, create, replace)).await
    }
}

/// The xattrs kept in this user metadata.
fn stored_xattrs(metadata: &HashMap<String, String>) -> std::collections::BTreeMap<String, Vec<u8>> {
    xattr::decode(metadata.get(xattr::METADATA_KEY).map(String::as_str))
}

/// Sets (`value`) or removes xattr `name` in `metadata`, with setxattr's XATTR_CREATE and
/// XATTR_REPLACE rules, within S3's 2 KiB of user metadata.
fn edit_xattr(
    metadata: &mut HashMap<String, String>,
    name: &str,
    value: Option<&[u8]>,
    create: bool,
    replace: bool,
) -> Result<(), FsError> {
    let mut attrs = stored_xattrs(metadata);
    match (value, attrs.contains_key(name)) {
        (Some(_), true) if create => return Err(FsError::AttributeExists),
        (Some(_), false) if replace => return Err(FsError::NoAttribute),
        (None, false) => return Err(FsError::NoAttribute),
        (Some(v), _) => {
            attrs.insert(name.to_string(), v.to_vec());
        }
        (None, true) => {
            attrs.remove(name);
        }
    }
    match xattr::encode(&attrs) {
        Some(stored) => metadata.insert(xattr::METADATA_KEY.into(), stored),
        None => metadata.remove(xattr::METADATA_KEY),
    };
    if metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > xattr::METADATA_LIMIT {
        return Err(FsError::AttributesTooBig);
    }
    Ok(())
}

/// `perm` without set-user-ID, and without set-group-ID when group execute is set (without
/// it, set-group-ID marks mandatory locking, which Linux keeps).
fn without_set_id(perm: u16) -> u16 {
    let perm = perm & !(libc::S_ISUID as u16);
    if perm & libc::S_IXGRP as u16 != 0 {
        perm & !(libc::S_ISGID as u16)
    } else {
        perm
    }
}
