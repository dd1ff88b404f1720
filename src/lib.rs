//! xosfs: a FUSE filesystem over CTYun XOS and other S3-compatible object stores.
//!
//! Requests flow one way: [`fuse`] (kernel wire) → [`fs`] (POSIX over objects) → [`s3`]
//! (the object store). Nothing below a layer knows the layer above it.

pub mod cleanup;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod metrics;
pub mod mount;
pub mod read;
pub mod recover;
pub mod s3;
pub mod share;
pub mod stats;
pub mod store;
pub mod times;
pub mod write;
