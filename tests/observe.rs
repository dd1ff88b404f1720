//! Seeing into a running mount and holding it back: the metrics endpoint (`--metrics-addr`)
//! and `xosfs stats`, checked against what the test server itself counted; a mount under
//! `--max-bandwidth` (its rates are measured by scripts/bench.sh, not here).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;
use xosfs_testserver::pseudo_random_bytes;

/// One scrape of the HTTP endpoint: the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the series `series` (name with its labels, as printed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn counters_move_by_what_a_read_and_a_write_sent_and_stats_shows_them() {
    let server = Server::fs();
    let data = pseudo_random_bytes(3 << 20, 7);
    server.put("big.bin", data.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let m = server.mount(&["--metrics-addr", &addr]);
    let stats = server.server.stats();

    let before = scrape(&addr);
    let gets = stats.count("GetObject");
    assert_eq!(std::fs::read(m.join("big.bin")).unwrap(), data);
    let after = scrape(&addr);
    let get_ok = "xosfs_requests_total{op=\"GetObject\",status=\"ok\"}";
    assert_eq!(value(&after, get_ok) - value(&before, get_ok), (stats.count("GetObject") - gets) as f64);
    assert!(value(&after, get_ok) > value(&before, get_ok));
    assert_eq!(value(&after, "xosfs_bytes_down_total") - value(&before, "xosfs_bytes_down_total"), data.len() as f64);

    let puts = stats.count("PutObject");
    std::fs::write(m.join("small.bin"), vec![b'w'; 100_000]).unwrap();
    let written = scrape(&addr);
    let put_ok = "xosfs_requests_total{op=\"PutObject\",status=\"ok\"}";
    assert_eq!(value(&written, put_ok) - value(&after, put_ok), (stats.count("PutObject") - puts) as f64);
    assert_eq!(value(&written, put_ok) - value(&after, put_ok), 1.0);
    assert_eq!(value(&written, "xosfs_bytes_up_total") - value(&after, "xosfs_bytes_up_total"), 100_000.0);
    assert!(value(&written, "xosfs_inodes") >= 2.0, "{written}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xosfs")).arg("stats").arg(m.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("GetObject {}", value(&written, get_ok))), "{text}");
    assert!(text.contains("down 3.0 MiB"), "{text}");
}

#[test]
fn a_capped_mount_reads_and_writes_whole_files() {
    let server = Server::fs();
    let data = pseudo_random_bytes(3 << 20, 11);
    server.put("in.bin", data.clone());
    let m = server.mount(&["--max-bandwidth", "64M:32M", "--part-size", "5M"]);
    assert_eq!(std::fs::read(m.join("in.bin")).unwrap(), data);
    let out = pseudo_random_bytes(12 << 20, 12);
    std::fs::write(m.join("out.bin"), &out).unwrap();
    assert_eq!(server.stored("out.bin").unwrap(), out);
}
