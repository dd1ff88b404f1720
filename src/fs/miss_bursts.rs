//! Bursts of lookups of names a directory does not have (a program creating many new
//! files, `tar` or `rsync` unpacking, a build probing search paths) answered by one listing
//! of the directory instead of a round trip per name. After [`BURST`] misses in a directory
//! within the negative TTL it is listed for its names alone (at most [`MAX_PAGES`] pages);
//! for the negative TTL, a name the listing did not show is missing. The set only ever
//! answers "no such file": a name it has is looked up as before, and a name this mount
//! makes joins it, so that a file made here is never denied once the inode table lets it go.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Misses within the negative TTL after which a directory is listed.
pub const BURST: u32 = 4;

/// A directory with more listing pages than this is not listed for its misses.
pub const MAX_PAGES: usize = 10;

#[derive(Default)]
pub struct MissBursts {
    dirs: DashMap<u64, DirMisses>,
}

struct DirMisses {
    /// Misses counted since `since`.
    count: u32,
    since: Instant,
    /// The names a listing that began at the instant found, with those made here since.
    names: Option<(Instant, HashSet<String>)>,
    /// Names made here while no listing's names were known: one under way may miss them.
    appeared: HashSet<String>,
    /// When a listing found the directory larger than [`MAX_PAGES`] pages.
    too_large: Option<Instant>,
}

impl MissBursts {
    /// Whether the directory's last listing (within `ttl`) shows `name` missing.
    pub fn known_missing(&self, dir: u64, name: &str, ttl: Duration) -> bool {
        self.dirs
            .get(&dir)
            .and_then(|d| d.names.as_ref().filter(|(at, _)| at.elapsed() < ttl).map(|(_, names)| !names.contains(name)))
            .unwrap_or(false)
    }

    /// Counts a miss in `dir`; true when the directory should be listed now.
    pub fn note_miss(&self, dir: u64, ttl: Duration) -> bool {
        self.sweep(ttl);
        let mut d = self.dirs.entry(dir).or_insert_with(|| DirMisses {
            count: 0,
            since: Instant::now(),
            names: None,
            appeared: HashSet::new(),
            too_large: None,
        });
        if d.since.elapsed() >= ttl {
            d.count = 0;
            d.since = Instant::now();
        }
        d.count += 1;
        let fresh_names = d.names.as_ref().is_some_and(|(at, _)| at.elapsed() < ttl);
        let too_large = d.too_large.is_some_and(|at| at.elapsed() < ttl);
        if d.count >= BURST && !fresh_names && !too_large {
            d.count = 0;
            d.since = Instant::now();
            return true;
        }
        false
    }

    /// Records what a listing of `dir` that began at `began` found: its names, or `None`
    /// when it had more than [`MAX_PAGES`] pages.
    pub fn listed(&self, dir: u64, began: Instant, names: Option<HashSet<String>>) {
        if let Some(mut d) = self.dirs.get_mut(&dir) {
            let appeared = std::mem::take(&mut d.appeared);
            match names {
                Some(mut names) => {
                    names.extend(appeared);
                    d.names = Some((began, names));
                }
                None => d.too_large = Some(began),
            }
        }
    }

    /// `name` now exists in `dir` (made or moved there by this mount).
    pub fn appeared(&self, dir: u64, name: &str) {
        if let Some(mut d) = self.dirs.get_mut(&dir) {
            match d.names.as_mut() {
                Some((_, names)) => names.insert(name.to_string()),
                None => d.appeared.insert(name.to_string()),
            };
        }
    }

    /// Drops what has expired, once there are many directories, so a walk over a large
    /// tree leaves nothing behind.
    fn sweep(&self, ttl: Duration) {
        if self.dirs.len() > 1024 {
            self.dirs
                .retain(|_, d| d.since.elapsed() < ttl || d.names.as_ref().is_some_and(|(at, _)| at.elapsed() < ttl));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn a_burst_of_misses_asks_for_one_listing_whose_names_answer_later_misses() {
        let m = MissBursts::default();
        for _ in 1..BURST {
            assert!(!m.note_miss(7, TTL));
        }
        assert!(m.note_miss(7, TTL), "the burst is reached");
        let began = Instant::now();
        m.listed(7, began, Some(HashSet::from(["a".to_string()])));
        assert!(m.known_missing(7, "b", TTL));
        assert!(!m.known_missing(7, "a", TTL), "a listed name is looked up");
        assert!(!m.known_missing(8, "b", TTL), "another directory knows nothing");
        for _ in 0..2 * BURST {
            assert!(!m.note_miss(7, TTL), "no second listing while the names are fresh");
        }
        m.appeared(7, "b");
        assert!(!m.known_missing(7, "b", TTL), "a name made here is never denied");
        assert!(!m.known_missing(7, "c", Duration::ZERO), "expired names answer nothing");
    }

    #[test]
    fn a_name_made_while_the_listing_runs_is_never_denied() {
        let m = MissBursts::default();
        while !m.note_miss(7, TTL) {}
        let began = Instant::now();
        m.appeared(7, "new");
        m.listed(7, began, Some(HashSet::new()));
        assert!(!m.known_missing(7, "new", TTL));
        assert!(m.known_missing(7, "other", TTL));
    }

    #[test]
    fn a_directory_too_large_to_list_is_not_asked_for_again_within_the_ttl() {
        let m = MissBursts::default();
        while !m.note_miss(7, TTL) {}
        m.listed(7, Instant::now(), None);
        assert!(!m.known_missing(7, "b", TTL));
        for _ in 0..2 * BURST {
            assert!(!m.note_miss(7, TTL));
        }
    }
}
