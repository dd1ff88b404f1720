//! StagingSpace: the disk the staging files of one mount may take (`--cache-limit`).
//! Writers take room before their bytes land in a staging file and give it back when
//! the bytes are released (a stored part of a stream) or the file's entry goes. A writer
//! that finds no room waits while some upload is under way that will free some; when
//! none is, there is nothing to wait for, and the write fails with ENOSPC.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub struct StagingSpace {
    /// `None`: only the disk limits the staging files.
    limit: Option<u64>,
    used: AtomicU64,
    /// Closes uploading files whose staging goes when they end.
    uploading: AtomicUsize,
    freed: Notify,
}

impl StagingSpace {
    pub fn new(limit: Option<u64>) -> StagingSpace {
        StagingSpace { limit, ..StagingSpace::default() }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Takes `bytes` of room if there is that much.
    pub fn try_take(&self, bytes: u64) -> bool {
        let Some(limit) = self.limit else {
            self.used.fetch_add(bytes, Ordering::AcqRel);
            return true;
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used + bytes <= limit).then_some(used + bytes))
            .is_ok()
    }

    pub fn give(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
        self.freed.notify_waiters();
    }

    /// Bytes the staging files of this mount hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Counts one close uploading until the guard drops.
    pub fn uploading(&self) -> Uploading<'_> {
        self.uploading.fetch_add(1, Ordering::AcqRel);
        Uploading(self)
    }

    /// Whether some upload under way will give room back when it ends.
    pub fn someone_uploading(&self) -> bool {
        self.uploading.load(Ordering::Acquire) > 0
    }

    /// Waits until room is given back (or a while: the caller looks again).
    pub async fn wait_freed(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.freed.notified()).await;
    }
}

pub struct Uploading<'a>(&'a StagingSpace);

impl Drop for Uploading<'_> {
    fn drop(&mut self) {
        self.0.uploading.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_up_to_the_limit_and_given_back() {
        let space = StagingSpace::new(Some(100));
        assert!(space.try_take(60));
        assert!(!space.try_take(50));
        space.give(20);
        assert!(space.try_take(50));
        assert_eq!(space.used(), 90);
        let unlimited = StagingSpace::new(None);
        assert!(unlimited.try_take(u64::MAX / 2));
        let guard = space.uploading();
        assert!(space.someone_uploading());
        drop(guard);
        assert!(!space.someone_uploading());
    }
}
