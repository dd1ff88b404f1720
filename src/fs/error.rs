//! The core's error, and the one place where errors become errno values.

use crate::store::{ErrorKind, ObjectError};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDirectory,
    #[error("is a directory")]
    IsDirectory,
    #[error("read-only file system")]
    ReadOnly,
    #[error("operation not supported yet")]
    NotSupported,
    #[error("stale file handle")]
    BadHandle,
    #[error("invalid file name")]
    InvalidName,
    #[error("file name too long")]
    NameTooLong,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a symbolic link")]
    NotSymlink,
    #[error("no such extended attribute")]
    NoAttribute,
    #[error("extended attribute exists")]
    AttributeExists,
    #[error("extended attributes of this object would not fit in its metadata")]
    AttributesTooBig,
    #[error("this attribute cannot be changed")]
    PermissionDenied,
    #[error("the object was deleted from the store while open")]
    Vanished,
    #[error("invalid value: {0}")]
    InvalidValue(#[from] crate::store::settings::Invalid),
    #[error("at the top of an account mount: {0}")]
    AccountTop(&'static str),
    #[error("'{0}' is not a valid bucket name: {1}")]
    InvalidBucketName(String, &'static str),
    #[error("a bucket's root directory has no object to keep extended attributes in")]
    BucketRoot,
    #[error("only user.* extended attributes are kept")]
    OtherNamespace,
    #[error("between buckets: renames and server-side copies stay within one bucket")]
    CrossBucket,
    #[error("the store refused the value: {0}")]
    Refused(Box<ObjectError>),

    // Boxed, as the store's errors are: a Result<_, FsError> stays small on every path.
    #[error("{0}")]
    Write(Box<crate::write::WriteError>),
    #[error("object store: {0}")]
    Store(Box<ObjectError>),
}

impl From<crate::write::WriteError> for FsError {
    fn from(e: crate::write::WriteError) -> FsError {
        FsError::Write(Box::new(e))
    }
}

impl From<ObjectError> for FsError {
    fn from(e: ObjectError) -> FsError {
        FsError::Store(Box::new(e))
    }
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDirectory => libc::ENOTDIR,
            FsError::IsDirectory => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::BadHandle => libc::EBADF,
            FsError::InvalidName => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotSymlink => libc::EINVAL,
            FsError::NoAttribute => libc::ENODATA,
            FsError::AttributeExists => libc::EEXIST,
            FsError::AttributesTooBig => libc::E2BIG,
            FsError::PermissionDenied | FsError::AccountTop(_) => libc::EPERM,
            FsError::InvalidBucketName(..) => libc::EINVAL,
            FsError::BucketRoot | FsError::OtherNamespace => libc::ENOTSUP,
            // As between two mounts: mv copies the bytes and removes the source itself.
            FsError::CrossBucket => libc::EXDEV,
            // A read's failure, not a missing name: read(2) has no ENOENT.
            FsError::Vanished => libc::EIO,
            FsError::InvalidValue(crate::store::settings::Invalid::TooManyTags(_)) => libc::E2BIG,
            FsError::InvalidValue(_) | FsError::Refused(_) => libc::EINVAL,

            FsError::Write(e) => match &**e {
                crate::write::WriteError::Staging(e) => e.raw_os_error().unwrap_or(libc::EIO),
                _ => libc::EIO,
            },
            FsError::Store(e) => match e.kind {
                ErrorKind::NotFound => libc::ENOENT,
                ErrorKind::AccessDenied => libc::EACCES,
                ErrorKind::Timeout => libc::ETIMEDOUT,
                ErrorKind::AlreadyExists => libc::EEXIST,
                ErrorKind::NotEmpty => libc::ENOTEMPTY,
                _ => libc::EIO,
            },
        }
    }

    /// Expected outcomes (a name that does not exist, `cp -a` offering an ACL) are not
    /// worth a log line.
    pub fn is_routine(&self) -> bool {
        match self {
            FsError::NotFound | FsError::NoAttribute | FsError::OtherNamespace => true,
            FsError::Store(e) => e.is(ErrorKind::NotFound),
            _ => false,
        }
    }
}
