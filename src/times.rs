//! Times as s3fs keeps them in object metadata (`x-amz-meta-mtime`, `-atime`, `-ctime`):
//! seconds since the epoch, with a fraction of up to nine digits when there is one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time as s3fs stores it: seconds since the epoch, with `.` and up to nine digits of
/// fraction when it has one. Read exactly (not through a float).
pub fn parse_time(v: &str) -> Option<SystemTime> {
    let (secs, frac) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
    let secs: u64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The stored form of a time: whole seconds as s3fs writes them, nanoseconds when there
/// are any, so every time reads back exactly.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        n => format!("{}.{n:09}", d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_write_back_exactly() {
        let t = parse_time("1600000000.123456789").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789));
        assert_eq!(format_time(t), "1600000000.123456789");
        assert_eq!(parse_time("1450000000.25"), Some(UNIX_EPOCH + Duration::new(1_450_000_000, 250_000_000)));
        assert_eq!(format_time(UNIX_EPOCH + Duration::new(1_450_000_000, 250_000_000)), "1450000000.250000000");
        assert_eq!(format_time(UNIX_EPOCH + Duration::from_secs(7)), "7");
        for bad in ["", "x", "1.2.3", "1.1234567890", "-1", "1e9"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
