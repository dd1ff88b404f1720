//! `xosfs stats MOUNTPOINT [--watch]`: what a mount's daemon is doing, in a few lines,
//! read from its control socket ([`crate::metrics::control_socket`]) in the metrics' text
//! format.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::metrics::control_socket;
use crate::mount::fstype_at;

/// Between two prints with `--watch`.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One sample: a metric's name, its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// The samples of a text exposition (comments skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
                None => (series, HashMap::new()),
            };
            Some(Sample { name: name.to_string(), labels, value })
        })
        .collect()
}

/// `a="x",b="y"`: our label values hold no quotes or commas.
fn parse_labels(s: &str) -> HashMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn sum(samples: &[Sample], name: &str, keep: impl Fn(&HashMap<String, String>) -> bool) -> f64 {
    // An empty sum of floats is -0.0: + 0.0 prints it as 0.
    samples.iter().filter(|s| s.name == name && keep(&s.labels)).map(|s| s.value).sum::<f64>() + 0.0
}

fn total(samples: &[Sample], name: &str) -> f64 {
    sum(samples, name, |_| true)
}

/// The summary of `now`; with `before` (taken `elapsed` earlier), rates too.
pub fn summary(now: &[Sample], before: Option<(&[Sample], Duration)>) -> String {
    let rate = |name: &str| match before {
        Some((b, elapsed)) => format!(" ({}/s)", human((total(now, name) - total(b, name)) / elapsed.as_secs_f64())),
        None => String::new(),
    };
    let requests = total(now, "xosfs_requests_total");
    let failed = sum(now, "xosfs_requests_total", |l| l.get("status").is_some_and(|s| s != "ok"));
    let mut by_op: Vec<(String, f64)> = Vec::new();
    for s in now.iter().filter(|s| s.name == "xosfs_requests_total") {
        let op = s.labels.get("op").cloned().unwrap_or_default();
        match by_op.iter_mut().find(|(o, _)| *o == op) {
            Some((_, n)) => *n += s.value,
            None => by_op.push((op, s.value)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ops: Vec<String> = by_op.iter().take(5).map(|(op, n)| format!("{op} {n}")).collect();
    let seconds = total(now, "xosfs_request_duration_seconds_sum");
    let mean_ms = if requests > 0.0 { seconds / requests * 1000.0 } else { 0.0 };
    let (hits, misses) = (total(now, "xosfs_cache_hits_total"), total(now, "xosfs_cache_misses_total"));
    let hit_ratio = if hits + misses > 0.0 { hits / (hits + misses) * 100.0 } else { 0.0 };
    let requests_rate = rate("xosfs_requests_total").replace("B/s", "/s");
    format!(
        "requests  {requests}{requests_rate} [{}], failed {failed}, retried {}, throttled {}, mean {mean_ms:.1} ms\n\
         data      down {}B{}, up {}B{}\n\
         cache     hits {hits}, misses {misses} ({hit_ratio:.1} % hits), evictions {}, read-ahead unread {}B\n\
         writing   {} file(s), staging {}B, write-back pending {} file(s) {}B\n\
         open      {} handle(s), {} inode(s)\n",
        ops.join(", "),
        total(now, "xosfs_retries_total"),
        total(now, "xosfs_throttled_total"),
        human(total(now, "xosfs_bytes_down_total")),
        rate("xosfs_bytes_down_total"),
        human(total(now, "xosfs_bytes_up_total")),
        rate("xosfs_bytes_up_total"),
        total(now, "xosfs_cache_evictions_total"),
        human(total(now, "xosfs_prefetch_unread_bytes_total")),
        total(now, "xosfs_files_being_written"),
        human(total(now, "xosfs_staging_bytes")),
        total(now, "xosfs_write_back_files"),
        human(total(now, "xosfs_write_back_bytes")),
        total(now, "xosfs_open_handles"),
        total(now, "xosfs_inodes"),
    )
}

/// 1536 -> "1.5 Ki"; units of 1024.
fn human(v: f64) -> String {
    let units = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} ")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

/// Reads the metrics of the mount at `mountpoint`; the error is one line for the user.
pub fn fetch(mountpoint: &Path) -> Result<String, String> {
    let canonical: PathBuf = std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    match fstype_at(&canonical) {
        Ok(Some(t)) if t == "fuse.xosfs" => {}
        Ok(_) => return Err(format!("{} is not the mount point of an xosfs filesystem", mountpoint.display())),
        Err(e) => return Err(format!("cannot read the mount table: {e}")),
    }
    let socket = control_socket(&canonical);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        format!(
            "cannot reach the daemon of {} at {} ({e}); a mount made by another user has its socket in that user's runtime directory",
            mountpoint.display(),
            socket.display()
        )
    })?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| format!("reading {}: {e}", socket.display()))?;
    Ok(text)
}

/// `xosfs stats`: prints once, or every [`WATCH_EVERY`] with rates.
pub fn run(mountpoint: &Path, watch: bool) -> Result<(), String> {
    let mut before = parse(&fetch(mountpoint)?);
    print!("{}", summary(&before, None));
    if !watch {
        return Ok(());
    }
    loop {
        std::thread::sleep(WATCH_EVERY);
        let now = parse(&fetch(mountpoint)?);
        println!();
        print!("{}", summary(&now, Some((&before, WATCH_EVERY))));
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_summary_adds_up_what_the_metrics_say() {
        let m = Metrics::new();
        m.request("GetObject", None, true, 0.004);
        m.request("GetObject", None, true, 0.002);
        m.request("HeadObject", Some(404), false, 0.003);
        m.bytes_down.inc_by(3 << 20);
        m.cache_hits.inc_by(3);
        m.cache_misses.inc();
        let samples = parse(&m.encode());
        let text = summary(&samples, None);
        assert!(text.contains("requests  3 [GetObject 2, HeadObject 1], failed 1"), "{text}");
        assert!(text.contains("mean 3.0 ms"), "{text}");
        assert!(text.contains("down 3.0 MiB"), "{text}");
        assert!(text.contains("(75.0 % hits)"), "{text}");
    }

    #[test]
    fn a_path_that_is_not_an_xosfs_mount_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(dir.path()).unwrap_err();
        assert!(err.contains("is not the mount point of an xosfs filesystem"), "{err}");
    }
}
