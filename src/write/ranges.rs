//! A set of byte ranges, kept merged: which bytes of a file being written are held in its
//! staging file, and which were changed since the last upload.

use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end, non-overlapping and non-adjacent.
    spans: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn insert(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        let touching: Vec<(u64, u64)> =
            self.spans.range(..=end).rev().take_while(|(_, e)| **e >= start).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in touching {
            self.spans.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.spans.insert(start, end);
    }

    /// Forgets everything at or past `at` (the file was truncated there).
    pub fn truncate(&mut self, at: u64) {
        let cut: Vec<u64> = self.spans.range(..).filter(|(_, e)| **e > at).map(|(s, _)| *s).collect();
        for s in cut {
            self.spans.remove(&s);
            if s < at {
                self.spans.insert(s, at);
            }
        }
    }

    /// Takes `r` out of the set.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let first = self.spans.range(..=r.start).next_back().map_or(r.start, |(s, _)| *s);
        let cut: Vec<(u64, u64)> =
            self.spans.range(first..r.end).filter(|(_, e)| **e > r.start).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in cut {
            self.spans.remove(&s);
            if s < r.start {
                self.spans.insert(s, r.start);
            }
            if e > r.end {
                self.spans.insert(r.end, e);
            }
        }
    }

    /// Bytes in the set within `r`.
    pub fn covered(&self, r: Range<u64>) -> u64 {
        self.pieces(r).iter().filter(|(_, held)| *held).map(|(p, _)| p.end - p.start).sum()
    }

    pub fn clear(&mut self) {
        self.spans.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn intersects(&self, r: &Range<u64>) -> bool {
        self.spans.range(..r.end).next_back().is_some_and(|(_, e)| *e > r.start)
    }

    /// Splits `r` into consecutive pieces, each marked whether it is in the set.
    pub fn pieces(&self, r: Range<u64>) -> Vec<(Range<u64>, bool)> {
        let mut out = Vec::new();
        let mut pos = r.start;
        let first = self.spans.range(..=r.start).next_back().map(|(s, _)| *s).unwrap_or(r.start);
        for (&s, &e) in self.spans.range(first..r.end) {
            if e <= pos {
                continue;
            }
            if s > pos {
                out.push((pos..s.min(r.end), false));
            }
            let piece_end = e.min(r.end);
            out.push((pos.max(s)..piece_end, true));
            pos = piece_end;
        }
        if pos < r.end {
            out.push((pos..r.end, false));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(r: Range<u64>) -> RangeSet {
        set(std::slice::from_ref(&r))
    }

    fn set(rs: &[Range<u64>]) -> RangeSet {
        let mut s = RangeSet::default();
        for r in rs {
            s.insert(r.clone());
        }
        s
    }

    #[test]
    fn inserts_merge_overlapping_and_adjacent() {
        let s = set(&[0..5, 10..20, 5..7, 15..30, 40..41]);
        assert_eq!(
            s.pieces(0..50),
            vec![(0..7, true), (7..10, false), (10..30, true), (30..40, false), (40..41, true), (41..50, false)]
        );
    }

    #[test]
    fn pieces_clip_to_the_asked_range() {
        let s = one(10..20);
        assert_eq!(s.pieces(15..25), vec![(15..20, true), (20..25, false)]);
        assert_eq!(s.pieces(0..5), vec![(0..5, false)]);
        assert_eq!(s.pieces(12..14), vec![(12..14, true)]);
    }

    #[test]
    fn truncate_cuts_spans() {
        let mut s = set(&[0..10, 20..30]);
        s.truncate(25);
        assert_eq!(s, set(&[0..10, 20..25]));
        s.truncate(5);
        assert_eq!(s, one(0..5));
    }

    #[test]
    fn remove_cuts_a_hole() {
        let mut s = set(&[0..10, 20..30]);
        s.remove(5..25);
        assert_eq!(s, set(&[0..5, 25..30]));
        s.remove(0..100);
        assert!(s.is_empty());
        let mut s = one(0..10);
        s.remove(3..4);
        assert_eq!((s.covered(0..10), s.covered(2..5)), (9, 2));
    }

    #[test]
    fn intersects_checks_overlap() {
        let s = one(10..20);
        assert!(s.intersects(&(5..11)));
        assert!(!s.intersects(&(20..30)));
        assert!(!s.intersects(&(0..10)));
    }
}
