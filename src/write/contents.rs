//! A file's bytes as a writer holds them: staged bytes from the staging file, the rest
//! from the base object (the version it was opened over, read only while it is still
//! that version), zeros past the base's end. [`Frozen`] is that view fixed at a
//! write-back close, so that reads are served while the upload runs.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::buffer::BaseObject;
use super::ranges::RangeSet;
use super::staging::StagingFile;
use crate::store::{ErrorKind, ObjectError, ObjectStore, PutOptions};

/// Where each byte of a file being written comes from.
pub(super) struct Contents<'a> {
    pub client: &'a dyn ObjectStore,
    pub key: &'a str,
    pub staging: Option<&'a StagingFile>,
    /// Bytes held in the staging file.
    pub present: &'a RangeSet,
    pub base: Option<&'a BaseObject>,
    /// Bytes at or past this offset never come from the base (truncated away).
    pub base_limit: u64,
}

impl Contents<'_> {
    /// The file's bytes in `r`: staged bytes, else the base's, else zeros.
    pub async fn assemble(&self, r: Range<u64>) -> Result<Bytes, ObjectError> {
        let pieces = self.present.pieces(r.clone());
        if let [(piece, true)] = pieces.as_slice() {
            // All staged (a file written from the start): the staging read is the part.
            return self.read_staged(piece.clone()).await.map(Bytes::from);
        }
        let mut out = Vec::with_capacity((r.end - r.start) as usize);
        for (piece, held) in pieces {
            let len = (piece.end - piece.start) as usize;
            if held {
                out.extend_from_slice(&self.read_staged(piece).await?);
                continue;
            }
            let from_base = match self.base {
                Some(base) => piece.start..piece.end.min(self.base_limit).min(base.size),
                None => 0..0,
            };
            if let (false, Some(base)) = (from_base.is_empty(), self.base) {
                let bytes = self.client.get_range_if(self.key, from_base.clone(), base.etag.as_deref()).await?;
                if bytes.len() as u64 != from_base.end - from_base.start {
                    return Err(ObjectError::new(ErrorKind::PreconditionFailed, "GetObject", self.key)
                        .with_message("the object changed size while it was being edited"));
                }
                out.extend_from_slice(&bytes);
            }
            out.resize(out.len() + (len - (from_base.end.saturating_sub(from_base.start)) as usize), 0);
        }
        Ok(Bytes::from(out))
    }

    async fn read_staged(&self, r: Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let staging = self.staging.expect("held bytes live in the staging file");
        staging.read_at(r.start, (r.end - r.start) as usize).await.map_err(|e| {
            ObjectError::new(ErrorKind::Malformed, "staging", self.key)
                .with_message(format!("reading the staging file: {e}"))
        })
    }
}

/// A closed file's contents while its upload runs.
pub struct Frozen {
    pub(super) client: Arc<dyn ObjectStore>,
    pub(super) key: String,
    pub(super) staging: Option<Arc<StagingFile>>,
    pub(super) present: RangeSet,
    pub(super) base: Option<BaseObject>,
    pub(super) base_limit: u64,
    pub(super) size: u64,
    pub(super) options: PutOptions,
}

impl Frozen {
    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, ObjectError> {
        let end = offset.saturating_add(u64::from(size)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let contents = Contents {
            client: &*self.client,
            key: &self.key,
            staging: self.staging.as_deref(),
            present: &self.present,
            base: self.base.as_ref(),
            base_limit: self.base_limit,
        };
        contents.assemble(offset..end).await
    }

    pub fn options(&self) -> &PutOptions {
        &self.options
    }
}
