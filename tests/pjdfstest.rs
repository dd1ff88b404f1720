//! POSIX conformance: pjdfstest (the Rust rewrite, crates.io `pjdfstest` 0.2.2) run over
//! the syscall groups xosfs implements, on a real mount of the in-memory S3 store.
//!
//! The set of failing pjdfstest cases must equal EXPECTED_FAILURES below, each with the
//! reason: a case that starts failing is a regression, and a case that starts passing
//! must be taken off the list (and README's "POSIX conformance (pjdfstest)" updated), so
//! the list stays the exact description of where xosfs departs from POSIX.
//!
//! scripts/test.sh installs pjdfstest and sets $PJDFSTEST; without it the binary is looked
//! for in PATH. Needs root: pjdfstest switches users (seteuid) and chowns.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;

/// pjdfstest's groups (its first name segment) that apply to xosfs. Left out: link
/// (hard links are EPERM by design), chflags.
const GROUPS: &[&str] = &[
    "chmod",
    "chown",
    "ftruncate",
    "mkdir",
    "mkfifo",
    "mknod",
    "open",
    "posix_fallocate",
    "rename",
    "rmdir",
    "symlink",
    "truncate",
    "unlink",
    "utimensat",
];

/// Cases of those groups that are not run, with why.
const NOT_RUN: &[(&str, &str)] = &[(
    "open::interact_2gb",
    "writes 4 bytes at offset 2 GiB: uploads a 2 GiB object (minutes); large files are covered by tests/write.rs",
)];

// Why cases fail; one line each, shared by the cases that fail for the same reason.
const HARD_LINKS: &str = "needs link(2): hard links are refused (EPERM), an object has one key";
const KEY_MAX: &str = "S3 keys end at 1,024 bytes: the 4,095-byte path the case builds cannot be made";
const DIR_TIMES: &str = "a directory's times are its marker's: adding or removing entries does not change them";
const NLINK: &str = "a directory's st_nlink is always 2: subdirectories are not counted";

/// Every case that fails, with the reason. Recompute with `cargo test --test pjdfstest`:
/// on a mismatch the message lists what to add or remove.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    ("chmod::enametoolong_path", KEY_MAX),
    ("chown::enametoolong_path", KEY_MAX),
    ("chown::lchown::enametoolong_path", KEY_MAX),
    ("mkdir::changed_time_fields_success", DIR_TIMES),
    ("mkdir::enametoolong_path", KEY_MAX),
    ("mkfifo::changed_time_fields_success", DIR_TIMES),
    ("mkfifo::enametoolong_path", KEY_MAX),
    ("mknod::changed_time_fields_success", DIR_TIMES),
    ("mknod::changed_times_success::block", DIR_TIMES),
    ("mknod::changed_times_success::char", DIR_TIMES),
    ("mknod::enametoolong_path", KEY_MAX),
    ("mknod::privileged::enametoolong_path", KEY_MAX),
    ("open::changed_time_fields_success", DIR_TIMES),
    ("open::enametoolong_path", KEY_MAX),
    ("rename::enametoolong_path", KEY_MAX),
    ("rename::preserve_metadata::block", HARD_LINKS),
    ("rename::preserve_metadata::char", HARD_LINKS),
    ("rename::preserve_metadata::fifo", HARD_LINKS),
    ("rename::preserve_metadata::regular", HARD_LINKS),
    ("rename::preserve_metadata::socket", HARD_LINKS),
    ("rename::to_multiply_linked::block", HARD_LINKS),
    ("rename::to_multiply_linked::char", HARD_LINKS),
    ("rename::to_multiply_linked::fifo", HARD_LINKS),
    ("rename::to_multiply_linked::regular", HARD_LINKS),
    ("rename::to_multiply_linked::socket", HARD_LINKS),
    ("rename::updates_link_parent", NLINK),
    ("rmdir::changed_time_parent_success", DIR_TIMES),
    ("rmdir::enametoolong_path", KEY_MAX),
    ("symlink::changed_parent_time_success", DIR_TIMES),
    ("symlink::enametoolong_path", KEY_MAX),
    ("truncate::enametoolong_path", KEY_MAX),
    ("unlink::enametoolong_path", KEY_MAX),
    ("unlink::unchanged_ctime_failed::block", HARD_LINKS),
    ("unlink::unchanged_ctime_failed::char", HARD_LINKS),
    ("unlink::unchanged_ctime_failed::fifo", HARD_LINKS),
    ("unlink::unchanged_ctime_failed::regular", HARD_LINKS),
    ("unlink::unchanged_ctime_failed::socket", HARD_LINKS),
    ("unlink::update_ctime_success::block", HARD_LINKS),
    ("unlink::update_ctime_success::char", HARD_LINKS),
    ("unlink::update_ctime_success::fifo", HARD_LINKS),
    ("unlink::update_ctime_success::regular", HARD_LINKS),
    ("unlink::update_ctime_success::socket", HARD_LINKS),
    ("unlink::update_mtime_ctime_success_folder::block", DIR_TIMES),
    ("unlink::update_mtime_ctime_success_folder::char", DIR_TIMES),
    ("unlink::update_mtime_ctime_success_folder::fifo", DIR_TIMES),
    ("unlink::update_mtime_ctime_success_folder::regular", DIR_TIMES),
    ("unlink::update_mtime_ctime_success_folder::socket", DIR_TIMES),
    ("unlink::update_mtime_ctime_success_folder::symlink", DIR_TIMES),
];

/// Users pjdfstest switches to (it needs two whose primary group is their own group entry).
const DUMMY_USERS: &[&str] = &["nobody", "daemon", "bin", "sys"];

#[test]
fn pjdfstest_failures_are_exactly_the_expected_ones() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "pjdfstest needs root (it switches users and chowns); run the tests as root, as scripts/test.sh and CI do"
    );
    let pjdfstest = find_pjdfstest();
    let work = tempfile::tempdir().unwrap();
    let users = dummy_users();
    // naptime is the pause between two changes whose timestamps are compared: longer than
    // the 1 s granularity of Last-Modified, which the times of objects without POSIX
    // metadata come from, so those cases pass or fail deterministically.
    let config = work.path().join("pjdfstest.toml");
    std::fs::write(&config, config_toml(1.05, &users)).unwrap();
    let discovery_config = work.path().join("discovery.toml");
    std::fs::write(&discovery_config, config_toml(0.01, &users)).unwrap();

    // pjdfstest cannot list its cases without running them, and it can only exclude by
    // naming the others: run the groups once on a local directory (a second or two) to
    // learn the names, then run all but NOT_RUN on the mount.
    let local = work.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let patterns: Vec<String> = GROUPS.iter().map(|g| format!("{g}::")).collect();
    let discovered = run_pjdfstest(&pjdfstest, &discovery_config, &local, false, &patterns);
    let names: Vec<&String> = discovered.keys().filter(|n| GROUPS.contains(&group(n))).collect();
    assert!(names.len() > 200, "pjdfstest discovery found only {} cases:\n{discovered:#?}", names.len());
    for (name, _) in NOT_RUN {
        assert!(discovered.contains_key(*name), "NOT_RUN names {name}, which pjdfstest no longer has");
    }
    let selected: Vec<String> = names
        .iter()
        .filter(|n| !NOT_RUN.iter().any(|(x, _)| *x == n.as_str()))
        .map(|n| format!("pjdfstest::tests::{n}"))
        .collect();

    let server = Server::memory();
    // Attributes always come from the store (attr-ttl 0) and "no such file" is never
    // remembered; the kernel keeps names it was told (only this mount changes the bucket),
    // which keeps path walks cheap. allow_other: pjdfstest acts as other users.
    let m = server.mount(&["--attr-ttl", "0", "--negative-ttl", "0", "--entry-ttl", "3600", "--allow-other"]);
    let dir = m.join("pjdfstest");
    std::fs::create_dir(&dir).unwrap();
    let results = run_pjdfstest(&pjdfstest, &config, &dir, true, &selected);

    print_summary(&results);
    check(&results, &selected);
}

fn group(name: &str) -> &str {
    name.split("::").next().unwrap()
}

#[derive(Debug)]
struct Outcome {
    status: String,
    detail: String,
}

/// The pjdfstest version EXPECTED_FAILURES was recorded with (scripts/test.sh installs it).
const PJDFSTEST_VERSION: &str = "pjdfstest 0.2.2";

/// Finds pjdfstest: $PJDFSTEST (scripts/test.sh sets it), else target/tools (where
/// test.sh installs it), else PATH. Missing is a failure, and so is another version.
fn find_pjdfstest() -> PathBuf {
    let found = match std::env::var_os("PJDFSTEST") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "PJDFSTEST={} does not exist", p.display());
            p
        }
        None => {
            let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/pjdfstest");
            let in_path = std::env::var_os("PATH")
                .and_then(|path| std::env::split_paths(&path).map(|d| d.join("pjdfstest")).find(|p| p.is_file()));
            Some(tools).filter(|t| t.is_file()).or(in_path).unwrap_or_else(|| {
                panic!(
                    "pjdfstest not found: run scripts/test.sh, which installs it (cargo install --locked pjdfstest \
                     --version 0.2.2 --root target/tools), or set PJDFSTEST to the binary"
                )
            })
        }
    };
    let version = Command::new(&found).arg("--version").output().unwrap_or_else(|e| panic!("{}: {e}", found.display()));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(
        version,
        PJDFSTEST_VERSION,
        "{} is not the pjdfstest version the expected failures were recorded with",
        found.display()
    );
    found
}

/// Two existing users whose primary group exists, as "user:group" pairs.
fn dummy_users() -> Vec<(String, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let group_name = |gid: &str| {
        groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == gid).map(|f| f[0])
    };
    let users: Vec<(String, String)> = DUMMY_USERS
        .iter()
        .filter_map(|u| {
            let fields: Vec<&str> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == *u)?;
            Some((u.to_string(), group_name(fields.get(3)?)?.to_string()))
        })
        .take(2)
        .collect();
    assert_eq!(users.len(), 2, "pjdfstest needs two of the users {DUMMY_USERS:?}, with their primary groups");
    users
}

fn config_toml(naptime: f64, users: &[(String, String)]) -> String {
    let entries: Vec<String> = users.iter().map(|(u, g)| format!("[\"{u}\", \"{g}\"]")).collect();
    format!(
        "[features]\nposix_fallocate = {{}}\nutime_now = {{}}\nutimensat = {{}}\n\n[settings]\nnaptime = {naptime}\nallow_remount = false\n\n\
         [dummy_auth]\nentries = [{}]\n",
        entries.join(", ")
    )
}

/// Runs pjdfstest in `dir` over `patterns` (exact names when `exact`) and parses each
/// case's outcome from its output.
fn run_pjdfstest(bin: &Path, config: &Path, dir: &Path, exact: bool, patterns: &[String]) -> BTreeMap<String, Outcome> {
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(config).arg("-p").arg(dir);
    if exact {
        cmd.arg("-e");
    }
    cmd.arg("--")
        .args(patterns)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    // Only a guard against a hung mount, far above any normal run.
    let output = match rx.recv_timeout(Duration::from_secs(30 * 60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("pjdfstest in {} hung for 30 minutes", dir.display());
        }
    };
    let stdout = strip_ansi(&String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("Summary:"),
        "pjdfstest did not finish ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    parse(&stdout)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Result lines are `NAME <spaces> STATUS`; the lines after a FAILED one, up to the next
/// result, are its panic message.
fn parse(stdout: &str) -> BTreeMap<String, Outcome> {
    const STATUSES: &[&str] = &["ok", "FAILED", "skipped", "PASSED UNEXPECTEDLY", "failed as expected"];
    let mut results = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in stdout.lines() {
        let trimmed = line.trim_end();
        if let Some((name, rest)) = trimmed.split_once(' ') {
            let status = rest.trim();
            if name.contains("::") && !line.starts_with(char::is_whitespace) && STATUSES.contains(&status) {
                results.insert(name.to_string(), Outcome { status: status.to_string(), detail: String::new() });
                last = Some(name.to_string());
                continue;
            }
        }
        if line.starts_with("Summary:") {
            last = None;
        }
        if let Some(outcome) = last.as_ref().and_then(|n| results.get_mut(n)) {
            let text = trimmed.trim();
            if !text.is_empty() && outcome.detail.len() < 300 {
                if !outcome.detail.is_empty() {
                    outcome.detail.push_str(" / ");
                }
                outcome.detail.push_str(text);
            }
        }
    }
    results
}

fn print_summary(results: &BTreeMap<String, Outcome>) {
    let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for (name, o) in results {
        let c = counts.entry(group(name)).or_default();
        match o.status.as_str() {
            "ok" => c[0] += 1,
            "FAILED" => c[1] += 1,
            _ => c[2] += 1,
        }
    }
    println!("pjdfstest on xosfs: group passed failed skipped");
    let mut total = [0; 3];
    for (g, c) in &counts {
        println!("  {g:10} {:4} {:4} {:4}", c[0], c[1], c[2]);
        (0..3).for_each(|i| total[i] += c[i]);
    }
    println!("  {:10} {:4} {:4} {:4}", "total", total[0], total[1], total[2]);
    for (name, o) in results.iter().filter(|(_, o)| o.status == "skipped") {
        println!("  skipped: {name} ({})", o.detail);
    }
}

fn check(results: &BTreeMap<String, Outcome>, selected: &[String]) {
    let mut problems = Vec::new();
    for name in selected {
        let name = name.trim_start_matches("pjdfstest::tests::");
        if !results.contains_key(name) {
            problems.push(format!("{name}: selected but pjdfstest reported nothing for it"));
        }
    }
    let expected: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    assert_eq!(expected.len(), EXPECTED_FAILURES.len(), "EXPECTED_FAILURES names a case twice");
    let failed: BTreeSet<&str> =
        results.iter().filter(|(_, o)| o.status == "FAILED").map(|(n, _)| n.as_str()).collect();
    let mut new_failures = Vec::new();
    for name in &failed {
        if !expected.contains_key(name) {
            new_failures.push(format!("    (\"{name}\", REASON), // {}", results[*name].detail));
        }
    }
    let mut new_passes = Vec::new();
    for (name, reason) in &expected {
        match results.get(*name) {
            Some(o) if o.status == "FAILED" => {}
            Some(o) => new_passes.push(format!("    {name}: {} now (was expected to fail: {reason})", o.status)),
            None => new_passes.push(format!("    {name}: not run or no longer exists (expected to fail: {reason})")),
        }
    }
    if !new_failures.is_empty() {
        problems.push(format!(
            "{} pjdfstest case(s) fail that are not in EXPECTED_FAILURES: fix the regression, or, if xosfs cannot \
             do better, add them with a reason (and to README's POSIX conformance section):\n{}",
            new_failures.len(),
            new_failures.join("\n")
        ));
    }
    if !new_passes.is_empty() {
        problems.push(format!(
            "{} case(s) in EXPECTED_FAILURES no longer fail: remove them from EXPECTED_FAILURES in \
             tests/pjdfstest.rs (and from README's POSIX conformance section):\n{}",
            new_passes.len(),
            new_passes.join("\n")
        ));
    }
    assert!(problems.is_empty(), "pjdfstest results differ from the expected ones:\n{}", problems.join("\n\n"));
}
