//! Bounds on what the core remembers of names the kernel no longer holds: inodes made by
//! listings and lookups, and names found missing. Without them a `find` over a large
//! bucket would leave the daemon holding every name it passed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::Fs;

/// Below this size a table is not swept.
const SWEEP_FLOOR: usize = 10_000;

/// When a growing table is swept next: once it is larger than a threshold that starts at
/// [`SWEEP_FLOOR`] and is then twice what the last sweep left, so sweeps cost amortized
/// constant time per entry added, and checking costs one atomic load.
pub(super) struct SweepAt(AtomicUsize);

impl SweepAt {
    pub(super) fn new() -> SweepAt {
        SweepAt(AtomicUsize::new(SWEEP_FLOOR))
    }

    /// Runs `sweep`, which returns the size it left, if `len` is past the threshold and no
    /// other sweep of this table is running (the threshold is out of reach while one is).
    pub(super) fn run(&self, len: usize, sweep: impl FnOnce() -> usize) {
        let at = self.0.load(Ordering::Relaxed);
        if len <= at || self.0.compare_exchange(at, usize::MAX, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return;
        }
        let left = sweep();
        self.0.store(SWEEP_FLOOR.max(left.saturating_mul(2)), Ordering::Release);
    }
}

impl Fs {
    /// Drops the inodes nobody uses once the table has grown enough: besides what the
    /// table keeps itself (kernel references, ancestors, inodes an operation holds, open
    /// directories and their entries not handed out yet), files open or being written.
    pub(super) fn prune_inodes(&self) {
        self.prune_inodes_at.run(self.inodes.len(), || {
            let open: HashSet<u64> = self.files.iter().map(|f| f.ino).collect();
            self.inodes.prune(|ino| open.contains(&ino) || self.writers.of(ino).is_some());
            self.inodes.len()
        });
    }

    /// Records `name` in `parent` as missing. An entry only leaves when its name is asked
    /// for again, so once there are many the expired ones go.
    pub(super) fn note_missing(&self, parent: u64, name: &str) {
        self.sweep_missing_at.run(self.missing.len(), || {
            self.missing.retain(|_, at| at.elapsed() < self.cfg.negative_ttl);
            self.missing.shrink_to_fit();
            self.missing.len()
        });
        self.missing.insert((parent, name.to_string()), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_runs_past_the_threshold_which_then_is_twice_what_it_left() {
        let at = SweepAt::new();
        let mut runs = 0;
        at.run(SWEEP_FLOOR, || unreachable!());
        at.run(SWEEP_FLOOR + 1, || {
            runs += 1;
            SWEEP_FLOOR
        });
        at.run(2 * SWEEP_FLOOR, || unreachable!());
        at.run(2 * SWEEP_FLOOR + 1, || {
            runs += 1;
            10
        });
        at.run(SWEEP_FLOOR, || unreachable!());
        assert_eq!(runs, 2);
        assert_eq!(at.0.load(Ordering::Relaxed), SWEEP_FLOOR);
    }
}
