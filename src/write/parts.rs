//! Part sizing for multipart uploads within the store's limits (XOS and S3: parts of 5 MiB
//! to 5 GiB except the last, at most 10,000 parts per upload).
//!
//! A streamed file's size is unknown while it is written, so part sizes climb a ladder:
//! the configured size for the first 1,000 parts, then doubling every 1,000 parts, capped
//! at 5 GiB. With the default 8 MiB this reaches 8 MiB x 1000 x (2^10 - 1) ≈ 7.8 TiB in
//! 10,000 parts, past the 5 TiB object limit. Every upload uses the same ladder, so parts
//! sent while a file streams keep their numbers and ranges when the rest goes at close.

pub const MIN_PART: u64 = 5 << 20;
pub const MAX_PART: u64 = 5 << 30;
pub const MAX_PARTS: u32 = 10_000;
const PARTS_PER_RUNG: u32 = 1_000;

/// How large part `number` (1-based) of a streamed upload is.
pub fn ladder_part_size(base: u64, number: u32) -> u64 {
    let rung = (number.saturating_sub(1) / PARTS_PER_RUNG).min(20);
    base.saturating_mul(1 << rung).min(MAX_PART)
}

/// The byte range part `number` (1-based) of a streamed upload covers.
pub fn ladder_part_range(base: u64, number: u32) -> std::ops::Range<u64> {
    let rung = (number.saturating_sub(1) / PARTS_PER_RUNG).min(20);
    // Rungs below this one hold 1000 parts each of base, 2 base, 4 base, ...
    let below = base.saturating_mul(u64::from(PARTS_PER_RUNG)).saturating_mul((1u64 << rung) - 1);
    let index_in_rung = u64::from(number.saturating_sub(1) - rung * PARTS_PER_RUNG);
    let size = ladder_part_size(base, number);
    let start = below.saturating_add(index_in_rung.saturating_mul(size));
    start..start.saturating_add(size)
}

/// How many ladder parts it takes to hold `len` bytes (at least one, for an empty upload).
pub fn ladder_part_count(base: u64, len: u64) -> u32 {
    let mut n = 1;
    while ladder_part_range(base, n).end < len && n < MAX_PARTS {
        n += 1;
    }
    n
}

/// The largest object a streamed upload with this base part size can reach.
#[cfg(test)]
fn ladder_capacity(base: u64) -> u64 {
    (1..=MAX_PARTS).map(|n| ladder_part_size(base, n)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_doubles_every_thousand_parts() {
        let base = 8 << 20;
        assert_eq!(ladder_part_size(base, 1), base);
        assert_eq!(ladder_part_size(base, 1000), base);
        assert_eq!(ladder_part_size(base, 1001), 2 * base);
        assert_eq!(ladder_part_size(base, 10_000), (8u64 << 20) * 512);
        assert!(ladder_part_size(MAX_PART, 5000) <= MAX_PART);
    }

    #[test]
    fn ladder_ranges_tile_the_file() {
        let base = 8 << 20;
        for n in [1, 2, 999, 1000, 1001, 1002, 2000, 2001, 9999, 10_000] {
            let r = ladder_part_range(base, n);
            assert_eq!(r.end - r.start, ladder_part_size(base, n));
            if n == 1 {
                assert_eq!(r.start, 0);
            }
        }
        for n in 1..3000 {
            assert_eq!(ladder_part_range(base, n).end, ladder_part_range(base, n + 1).start, "gap after part {n}");
        }
        assert_eq!(ladder_part_count(base, 0), 1);
        assert_eq!(ladder_part_count(base, base), 1);
        assert_eq!(ladder_part_count(base, base + 1), 2);
        assert_eq!(ladder_part_count(base, 1000 * base + 1), 1001);
    }

    #[test]
    fn default_ladder_reaches_past_five_tib() {
        let cap = ladder_capacity(8 << 20);
        assert!(cap > 5u64 << 40, "capacity {cap}");
        assert_eq!(cap, (8u64 << 20) * 1000 * 1023);
    }
}
