#!/usr/bin/env bash
# Side-by-side figures, one run: a raw S3 client (16 parallel 8 MiB requests: the limit),
# xosfs, s3fs and rclone mount (--vfs-cache-mode writes), all against the same fresh local
# endpoint (xosfs-testserver over s3s-fs, with TCP_NODELAY and 404 for directory keys).
# Writes bench/results.md (figures and ratios to the raw client) and bench/ratios.png.
#
#   scripts/bench.sh            run everything (needs root: mounts, drop_caches)
#   scripts/bench.sh --wan      the same behind ~20 ms of round trip: the server runs in a
#                               network namespace of its own (veth pair, link-local addresses)
#                               behind xosfs-delay-proxy (no netem on this kernel); writes
#                               bench/results-wan.md and bench/ratios-wan.png
#   BENCH_FS="xosfs" scripts/bench.sh   only some filesystems
#   BENCH_SIZE_MIB=64 scripts/bench.sh  a smaller big object (default 1024)
#   BENCH_REPEAT=1 scripts/bench.sh     cold reads and random reads once each (default 3,
#                                       reported as the median; this machine is noisy)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WAN=0
for arg in "$@"; do
    case $arg in
    --wan) WAN=1 ;;
    *) echo "usage: scripts/bench.sh [--wan]" >&2; exit 2 ;;
    esac
done
DELAY_MS=10 # one way, in each direction: 20 ms added to every round trip

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
tools="fusermount3:fuse3 s3fs:s3fs rclone:rclone fio:fio bc:bc"
[ "$WAN" = 1 ] && tools+=" ip:iproute2"
for tool in $tools; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing+=(python3-matplotlib)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked -p xosfs -p xosfs-testserver

FILESYSTEMS=${BENCH_FS:-"xosfs s3fs rclone"}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
REPEAT=${BENCH_REPEAT:-3}
WORK=$(mktemp -d /tmp/xosfs-bench.XXXXXX)
export AWS_ACCESS_KEY_ID=bench-access-key AWS_SECRET_ACCESS_KEY=bench-secret-key
MNT=$WORK/mnt
mkdir -p "$MNT" "$WORK/data" bench

cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    pkill -f "rclone mount b:bench $MNT" 2>/dev/null || true
    [ -n "${PROXY:-}" ] && { kill "$PROXY" 2>/dev/null || true; }
    [ -n "${SERVER:-}" ] && { kill "$SERVER" 2>/dev/null || true; }
    if [ -n "${NS:-}" ]; then
        ip netns del "$NS" 2>/dev/null || true # takes the veth pair with it, in a while
        ip link del "$VETH" 2>/dev/null || true
    fi
    mountpoint -q "$MNT" || rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a background command logging to $WORK/$1.log, waits for its "listening on" line and
# prints what follows (its address); the pid goes to $WORK/$1.pid.
start_listener() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    echo $! >"$WORK/$name.pid"
    until grep -q "^listening" "$WORK/$name.log"; do
        kill -0 "$(cat "$WORK/$name.pid")" 2>/dev/null || { cat "$WORK/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    sed -n 's/^listening on //p' "$WORK/$name.log"
}

# Every process under test runs in a session of its own, as the mounts' daemons do (they
# detach with setsid): the kernel's autogroup scheduling gives each session a group, and a raw
# client sharing the server's group was measured using a third less CPU (half the context
# switches) than the same client in a group of its own: an edge that has nothing to do with
# the client.
SERVER_ARGS=(--root "$WORK/data" --port 0 --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY"
    --bucket bench)
if [ "$WAN" = 0 ]; then
    EP=$(start_listener server setsid "$ROOT/target/release/xosfs-testserver" "${SERVER_ARGS[@]}")
    SERVER=$(cat "$WORK/server.pid")
    SEED=$EP
else
    # Server and delay proxy in a namespace of their own; the server listens on the
    # namespace's loopback, so the proxy (on the veth address) is the only way in.
    NS=xosfs-bench-$$ VETH=xbench$$
    NET=169.254.$(($$ % 250 + 1)).$(($$ / 250 % 63 * 4))
    HOST_IP=${NET%.*}.$((${NET##*.} + 1)) NS_IP=${NET%.*}.$((${NET##*.} + 2))
    ip netns add "$NS"
    ip link add "$VETH" type veth peer name "${VETH}n" netns "$NS"
    ip addr add "$HOST_IP/30" dev "$VETH"
    ip link set "$VETH" up
    ip -n "$NS" addr add "$NS_IP/30" dev "${VETH}n"
    ip -n "$NS" link set "${VETH}n" up
    ip -n "$NS" link set lo up
    # setsid and `ip netns exec` exec the command, so the pids are the servers'.
    SEED=$(start_listener server setsid ip netns exec "$NS" "$ROOT/target/release/xosfs-testserver" "${SERVER_ARGS[@]}")
    SERVER=$(cat "$WORK/server.pid")
    PROXY_ADDR=$(start_listener proxy setsid ip netns exec "$NS" "$ROOT/target/release/xosfs-delay-proxy" \
        --listen "$NS_IP:0" --target "${SEED#http://}" --delay-ms "$DELAY_MS")
    PROXY=$(cat "$WORK/proxy.pid")
    EP=http://$PROXY_ADDR
    # Round trip as a client sees it: median of 20 HEADs on one kept-alive connection.
    RTT_MS=$(/usr/bin/python3 - "$PROXY_ADDR" <<'PY'
import http.client, statistics, sys, time
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port))
times = []
for _ in range(21):
    t = time.perf_counter()
    c.request("HEAD", "/bench")
    c.getresponse().read()
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times[1:]) * 1000:.1f}")
PY
)
    echo "wan: server in namespace $NS at $EP, measured round trip ${RTT_MS} ms"
fi
RAW="setsid -w $ROOT/target/release/xosfs-bench-client --endpoint $EP --bucket bench"
# Seeding is not measured: in WAN mode it goes straight to the server, inside the namespace.
SEED_RAW="$ROOT/target/release/xosfs-bench-client --endpoint $SEED --bucket bench"
[ "$WAN" = 1 ] && SEED_RAW="ip netns exec $NS $SEED_RAW"

now() { date +%s.%N; }
secs() { echo "$(now) - $1" | bc -l | xargs printf "%.3f"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Every cold start drops this machine's caches, then reads the server's own files back into
# memory: the endpoint stands for a remote store with caches of its own, and no client should
# pay for the local disk (the raw client read the object right after it was written).
drop_caches() {
    sync; echo 3 >/proc/sys/vm/drop_caches
    find "$WORK/data" -type f \( -name big.bin -o -size -64M \) -print0 | xargs -0 -r cat >/dev/null
}

echo "seeding: ${SIZE_MIB} MiB object, 10,000 small objects"
$SEED_RAW put big.bin $((SIZE_MIB << 20)) >/dev/null
$SEED_RAW put-many ls10k/ 10000 16 >/dev/null
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/src.bin"

declare -A R
# The raw client's cold and random reads are sampled here and again before each of every
# filesystem's, and the median of all is its figure: this shared machine's speed drifts
# over a run, and a raw figure from its start alone would be compared with later ones.
raw_reads=() raw_randoms=()
raw_samples() {
    drop_caches; raw_reads+=("$($RAW get big.bin)")
    drop_caches; raw_randoms+=("$($RAW random big.bin 256)")
}
for _ in $(seq "$REPEAT"); do raw_samples; done
R[raw,write]=$($RAW put raw-write.bin $((SIZE_MIB << 20)))
R[raw,small]=$($RAW small raw-small/ 1000)
R[raw,ls_cold]=$($RAW list ls10k/)
R[raw,ls_warm]=${R[raw,ls_cold]}
R[raw,rss]=0 R[raw,rss_read]=0 R[raw,rss_write]=0

wait_mounted() {
    for _ in $(seq 300); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
    echo "bench.sh: the mount did not come up" >&2
    exit 1
}

mount_fs() {
    case $1 in
    xosfs)
        "$ROOT/target/release/xosfs" bench "$MNT" --endpoint "$EP" --path-style --cache-dir "$WORK/xosfs-cache"
        pgrep -f "xosfs bench $MNT" | head -1 ;;
    s3fs)
        echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$WORK/passwd"; chmod 600 "$WORK/passwd"
        s3fs bench "$MNT" -o "url=$EP,use_path_request_style,passwd_file=$WORK/passwd"
        wait_mounted
        pgrep -f "s3fs bench $MNT" | head -1 ;;
    rclone)
        # rclone's S3 backend refuses a custom CA bundle for a plain-HTTP endpoint.
        env -u AWS_CA_BUNDLE RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$EP \
        RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
            rclone mount b:bench "$MNT" --vfs-cache-mode writes --cache-dir "$WORK/rclone-cache" --daemon
        wait_mounted
        pgrep -f "rclone mount b:bench $MNT" | head -1 ;;
    esac
}

unmount_fs() {
    umount "$MNT" 2>/dev/null || umount -l "$MNT"
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}

# Peak resident memory of a daemon so far (MiB).
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
max() { if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi; }

small_files() {
    # 1,000 files of 4 KiB created, read back and removed; creation counts until the store
    # lists all of them (rclone uploads after close). Files go in the root: s3fs cannot see
    # directories that s3s-fs made from markers.
    local t; t=$(now)
    /usr/bin/python3 - "$MNT/small-$1-" <<'PY'
import sys
p = sys.argv[1]
data = b"s" * 4096
for i in range(1000):
    with open(f"{p}{i:04}", "wb") as f:
        f.write(data)
PY
    until [ "$($RAW count "small-$1-")" -ge 1000 ]; do sleep 0.05; done
    /usr/bin/python3 - "$MNT/small-$1-" <<'PY'
import os, sys
p = sys.argv[1]
for i in range(1000):
    with open(f"{p}{i:04}", "rb") as f:
        assert len(f.read()) == 4096
for i in range(1000):
    os.remove(f"{p}{i:04}")
PY
    secs "$t"
}

for fs in $FILESYSTEMS; do
    echo "== $fs"
    drop_caches
    pid=$(mount_fs "$fs")
    t=$(now); ls -l "$MNT/ls10k" >/dev/null; R[$fs,ls_cold]=$(secs "$t")
    t=$(now); ls -l "$MNT/ls10k" >/dev/null; R[$fs,ls_warm]=$(secs "$t")
    peak=$(hwm "$pid")
    # Every cold start on a fresh mount with empty caches: what earlier reads left in a
    # daemon's own cache would answer some reads without a request.
    reads=() randoms=()
    for r in $(seq "$REPEAT"); do
        unmount_fs "$pid"; raw_samples
        drop_caches; pid=$(mount_fs "$fs")
        t=$(now); cat "$MNT/big.bin" >/dev/null; reads+=("$(secs "$t")")
        if [ "$r" = "$REPEAT" ]; then # the last mount also re-reads, for the warm figure
            t=$(now); cat "$MNT/big.bin" >/dev/null; R[$fs,reread]=$(secs "$t")
            R[$fs,rss_read]=$(hwm "$pid")
        fi
        peak=$(max "$peak" "$(hwm "$pid")")
        unmount_fs "$pid"; drop_caches; pid=$(mount_fs "$fs")
        # fio's own runtime of the reads, like the raw client's timing of its GETs: the
        # wall time of the fio process adds its start-up, as much as the reads themselves.
        randoms+=("$(fio --name=rand --filename="$MNT/big.bin" --rw=randread --bs=64k --io_size=16m \
            --size=$((SIZE_MIB))m --ioengine=psync --readonly --randrepeat=1 --output-format=json |
            /usr/bin/python3 -c 'import json, sys; print("%.3f" % (json.load(sys.stdin)["jobs"][0]["read"]["runtime"] / 1000))')")
        peak=$(max "$peak" "$(hwm "$pid")")
    done
    R[$fs,read]=$(median "${reads[@]}") R[$fs,random]=$(median "${randoms[@]}")
    # A fresh mount for the write, so its peak is the writer's, not the read cache's.
    unmount_fs "$pid"; pid=$(mount_fs "$fs")
    t=$(now); dd if="$WORK/src.bin" of="$MNT/write-$fs.bin" bs=8M conv=fsync status=none; R[$fs,write]=$(secs "$t")
    R[$fs,rss_write]=$(hwm "$pid")
    R[$fs,small]=$(small_files "$fs")
    R[$fs,rss]=$(max "$peak" "$(hwm "$pid")")
    unmount_fs "$pid"
done

R[raw,read]=$(median "${raw_reads[@]}") R[raw,random]=$(median "${raw_randoms[@]}")
R[raw,reread]=${R[raw,read]}

if [ "$WAN" = 0 ]; then
    OUT=bench/results.md PNG=bench/ratios.png
    WHERE="local s3s-fs endpoint"
else
    OUT=bench/results-wan.md PNG=bench/ratios-wan.png
    WHERE="s3s-fs endpoint behind $((2 * DELAY_MS)) ms of added round trip"
fi
# Random reads: raw does 256 GETs, the filesystems 256 reads of 64 KiB (16 MiB): same count.
{
    echo "# xosfs benchmark ($(date -u +%Y-%m-%d), ${SIZE_MIB} MiB object, $WHERE)"
    echo
    if [ "$WAN" = 1 ]; then
        echo "The server runs in a network namespace of its own, reached over a veth pair through"
        echo "xosfs-delay-proxy, which holds every byte back ${DELAY_MS} ms in each direction (and a new"
        echo "connection's first bytes one more round trip, for the handshake) without limiting"
        echo "throughput. Measured round trip of an HTTP request on an open connection: ${RTT_MS} ms."
        echo
    fi
    echo "Seconds (lower is better); in brackets the ratio of the raw client's time to this one"
    echo "(1.00 = as fast as the raw client, above 1 = faster). Peak RSS in MiB. Cold and random"
    echo "reads: the median of $REPEAT, each on a fresh mount after dropping this machine's caches"
    echo "(the server's files are read back into memory); random reads timed by fio's own runtime."
    echo "The raw client's: the median of ${#raw_reads[@]}, taken before each of those and at the start."
    echo "The server, the raw client and each daemon run in a session (scheduler group) of their own."
    echo
    printf "| workload | raw client |"; for fs in $FILESYSTEMS; do printf " %s |" "$fs"; done; echo
    printf "|---|---|"; for _ in $FILESYSTEMS; do printf -- "---|"; done; echo
    for w in read reread random write small ls_cold ls_warm rss_read rss_write rss; do
        case $w in
        read) name="cold sequential read" ;; reread) name="warm re-read" ;;
        random) name="random 64 KiB reads (256)" ;; write) name="sequential write + fsync" ;;
        small) name="1,000 x 4 KiB create/read/remove" ;; ls_cold) name="ls -l 10,000 objects, cold" ;;
        ls_warm) name="ls -l 10,000 objects, warm" ;; rss) name="peak RSS, whole run (MiB)" ;;
        rss_read) name="peak RSS reading ${SIZE_MIB} MiB twice (MiB)" ;;
        rss_write) name="peak RSS writing ${SIZE_MIB} MiB, fresh mount (MiB)" ;;
        esac
        printf "| %s | %s |" "$name" "${R[raw,$w]}"
        for fs in $FILESYSTEMS; do
            if [[ $w = rss* ]]; then printf " %s |" "${R[$fs,$w]}"
            else printf " %s (%.2f) |" "${R[$fs,$w]}" "$(echo "${R[raw,$w]} / ${R[$fs,$w]}" | bc -l)"; fi
        done
        echo
    done
} | tee "$OUT"

/usr/bin/python3 - "$OUT" "$PNG" <<'PY'
import re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [l for l in open(sys.argv[1]) if l.startswith("| ") and "workload" not in l and "RSS" not in l]
names, series = [], {}
header = [l for l in open(sys.argv[1]) if l.startswith("| workload")][0]
fss = [c.strip() for c in header.strip().strip("|").split("|")][2:]
for l in rows:
    cells = [c.strip() for c in l.strip().strip("|").split("|")]
    names.append(cells[0])
    for fs, c in zip(fss, cells[2:]):
        series.setdefault(fs, []).append(float(re.search(r"\(([\d.]+)\)", c).group(1)))
fig, ax = plt.subplots(figsize=(10, 5))
w = 0.8 / max(1, len(series))
for i, (fs, vals) in enumerate(series.items()):
    ax.bar([x + i * w for x in range(len(names))], vals, w, label=fs)
ax.axhline(1.0, color="black", linewidth=0.8)
ax.set_xticks([x + w * (len(series) - 1) / 2 for x in range(len(names))])
ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
ax.set_ylabel("speed relative to the raw S3 client")
ax.set_yscale("log")
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
PY
echo "wrote $OUT and $PNG"
