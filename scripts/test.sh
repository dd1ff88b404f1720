#!/usr/bin/env bash
# The one command that runs every test: installs what the tests need (FUSE tools, gio, getfattr,
# moto, pjdfstest; Rust must already be there), then runs the whole workspace's tests. Needs root
# (or a user allowed to mount FUSE filesystems; tests/pjdfstest.rs needs root) and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v sha256sum >/dev/null || missing+=(coreutils)
command -v find >/dev/null || missing+=(findutils)
command -v rsync >/dev/null || missing+=(rsync)
command -v gio >/dev/null || missing+=(libglib2.0-bin)
command -v getfattr >/dev/null || missing+=(attr)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi
# moto's S3 server (tests/xos_surface.rs): tagging, ACLs, versioning, bucket settings.
command -v moto_server >/dev/null || python3 -m pip install --quiet 'moto[server]'
[ -e /dev/fuse ] || { echo "test.sh: /dev/fuse is missing: the tests mount real FUSE filesystems" >&2; exit 1; }

# pjdfstest (POSIX conformance, tests/pjdfstest.rs), at the version its expected failures
# were recorded with: built once into target/tools (about a minute), reused after.
pjdfstest_version=0.2.2
if [ -z "${PJDFSTEST:-}" ]; then
    PJDFSTEST=$PWD/target/tools/bin/pjdfstest
    if ! "$PJDFSTEST" --version 2>/dev/null | grep -qx "pjdfstest $pjdfstest_version"; then
        echo "installing pjdfstest $pjdfstest_version into target/tools"
        cargo install --quiet --locked pjdfstest --version "$pjdfstest_version" --root "$PWD/target/tools"
    fi
fi
export PJDFSTEST

# No doc tests exist; --all-targets skips their empty runs. The last line sums every
# binary's results.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
