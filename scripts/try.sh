#!/usr/bin/env bash
# Try xosfs in one command: build it, start a local S3-compatible endpoint (s3s-fs, on
# loopback) holding a bucket "demo" with sample files, and mount that bucket.
#
#   scripts/try.sh [MOUNTPOINT]    mount at MOUNTPOINT (default ./mnt)
#   scripts/try.sh stop            unmount and stop the endpoint
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.demo
PORT=${XOSFS_DEMO_PORT:-8014}
export AWS_ACCESS_KEY_ID=demo-access-key AWS_SECRET_ACCESS_KEY=demo-secret-key
mkdir -p "$STATE"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "${1:-}" = stop ]; then
    if [ -f "$STATE/mountpoint" ]; then
        mp=$(cat "$STATE/mountpoint")
        umount "$mp" 2>/dev/null || fusermount3 -u "$mp" 2>/dev/null || true
        rm -f "$STATE/mountpoint"
    fi
    if [ -f "$STATE/server.pid" ]; then
        kill "$(cat "$STATE/server.pid")" 2>/dev/null || true
        rm -f "$STATE/server.pid"
    fi
    echo "stopped"
    exit 0
fi

MNT=${1:-./mnt}

if ! command -v fusermount3 >/dev/null; then
    echo "installing fuse3"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq fuse3
fi
command -v cargo >/dev/null || { echo "try.sh: cargo is needed (https://rustup.rs)" >&2; exit 1; }

echo "building (release)..."
cargo build --release --locked -p xosfs -p xosfs-testserver

if [ -f "$STATE/server.pid" ] && kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then
    echo "endpoint already running (pid $(cat "$STATE/server.pid"))"
else
    mkdir -p "$STATE/data"
    ./target/release/xosfs-testserver --root "$STATE/data" --host 127.0.0.1 --port "$PORT" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
        --bucket demo --seed-demo demo >"$STATE/server.log" 2>&1 &
    echo $! >"$STATE/server.pid"
    for _ in $(seq 600); do
        grep -q "^seeded demo" "$STATE/server.log" && break
        kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null || { cat "$STATE/server.log" >&2; exit 1; }
        sleep 0.1
    done
    grep -q "^seeded demo" "$STATE/server.log" || { echo "try.sh: the endpoint did not come up" >&2; exit 1; }
fi

mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
    echo "$MNT is already mounted"
else
    ./target/release/xosfs demo "$MNT" --endpoint "http://127.0.0.1:$PORT" --path-style \
        --log-file "$STATE/xosfs.log"
fi
realpath "$MNT" >"$STATE/mountpoint"

cat <<EOT

xosfs has mounted bucket "demo" of the local endpoint http://127.0.0.1:$PORT on $MNT.
Look around:
    ls -l $MNT
    find $MNT
    cat $MNT/hello.txt
    sha256sum $MNT/videos/sample.bin
Logs: $STATE/xosfs.log (filesystem), $STATE/server.log (endpoint)
Stop: scripts/try.sh stop
EOT
