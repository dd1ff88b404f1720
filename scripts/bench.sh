#!/usr/bin/env bash
# Side-by-side figures, one run: a raw S3 client (16 parallel 8 MiB requests: the limit),
# xosfs, s3fs and rclone mount (--vfs-cache-mode writes), all against the same fresh local
# endpoint (xosfs-testserver over s3s-fs, with TCP_NODELAY and 404 for directory keys).
# Writes bench/results.md (figures and ratios to the raw client) and bench/ratios.png.
# A second table has issue 13's figures, as ratios from the same run: 1,000 x 4 KiB files
# created until a raw listing of the bucket shows them all (xosfs with and without
# --write-back, s3fs, rclone), in files/s with xosfs --write-back's ratios to s3fs and rclone;
# and a BENCH_SIZE_MIB sequential write through xosfs with its cache dir on a 256 MiB tmpfs
# and --cache-limit 256M against the same write with the default cache dir and no limit, in
# MiB/s with the ratio limited/unlimited. A third: those 1,000 files removed by one rm -rf,
# until unlisted (each filesystem, xosfs with and without --write-back), and a read and a
# write through xosfs under --max-bandwidth, as shares of the cap.
# A fourth table has issue 16's figures: each daemon's CPU seconds per GiB read and written,
# the bytes the server sent beyond what the workload read (wasted read-ahead) for the cold
# and random reads, and probes (head -c 1M, file, the first and last MiB as a thumbnailer
# reads them, and ffprobe when installed), each on a fresh mount with empty caches: bytes
# fetched (counted by the server) against bytes the probe read (counted by strace); and
# xosfs's re-read after a remount with --disk-cache against its cold read.
# bench/fetched.png charts them.
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
#   BENCH_SMALL_REPEAT=1 scripts/bench.sh  small files created and removed once per
#                                       filesystem (default 3, the median)
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
tools="fusermount3:fuse3 s3fs:s3fs rclone:rclone fio:fio bc:bc strace:strace file:file"
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
SMALL_REPEAT=${BENCH_SMALL_REPEAT:-3}
LIMIT_MIB=256 # cache dir size and --cache-limit of the limited write
CAP_DOWN=100 CAP_UP=50 # MiB/s of the --max-bandwidth run
WORK=$(mktemp -d /tmp/xosfs-bench.XXXXXX)
LIMITED_CACHE=$WORK/limited-cache # a tmpfs of LIMIT_MIB while the limited write runs
UNLIMITED_CACHE=$WORK/unlimited-cache # a tmpfs with room for the whole file, for the same disk speed
export AWS_ACCESS_KEY_ID=bench-access-key AWS_SECRET_ACCESS_KEY=bench-secret-key
MNT=$WORK/mnt
mkdir -p "$MNT" "$WORK/data" bench

cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    pkill -f "rclone mount b:bench $MNT" 2>/dev/null || true
    [ -n "${PROXY:-}" ] && { kill "$PROXY" 2>/dev/null || true; }
    [ -n "${SERVER:-}" ] && { kill "$SERVER" 2>/dev/null || true; }
    if mountpoint -q "$UNLIMITED_CACHE"; then
        umount "$UNLIMITED_CACHE" 2>/dev/null || umount -l "$UNLIMITED_CACHE" || true
    fi
    if mountpoint -q "$LIMITED_CACHE"; then
        umount "$LIMITED_CACHE" 2>/dev/null || umount -l "$LIMITED_CACHE" || true
    fi
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
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system, all threads) process $1 has used so far.
cpu_secs() { awk -v hz="$CLK_TCK" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# Body bytes of the server's GET answers so far: it prints them on SIGUSR1.
served() {
    local n
    n=$(grep -c '^stats ' "$WORK/server.log" || true)
    kill -USR1 "$SERVER"
    until [ "$(grep -c '^stats ' "$WORK/server.log" || true)" -gt "$n" ]; do sleep 0.02; done
    grep '^stats ' "$WORK/server.log" | tail -1 | sed 's/.*get_bytes=//'
}
mib() { echo "$1 / 1048576" | bc -l | xargs printf "%.1f"; }
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

# xosfs with its staging files in CACHE_DIR and any further flags (--write-back, --cache-limit);
# prints the daemon's pid. Exits if it does not mount: a write would land in the bare mount point.
mount_xosfs() {
    local cache=$1; shift
    if ! "$ROOT/target/release/xosfs" bench "$MNT" --endpoint "$EP" --path-style --cache-dir "$cache" "$@"; then
        echo "bench.sh: xosfs --cache-dir $cache $* did not mount" >&2
        exit 1
    fi
    wait_mounted
    pgrep -f "xosfs bench $MNT" | head -1
}

# Mounts FS (xosfs: with any further flags) and prints the daemon's pid.
mount_fs() {
    local fs=$1; shift
    case $fs in
    xosfs) mount_xosfs "$WORK/xosfs-cache" "$@" ;;
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
# Issue 13's target for a ratio: "at least TARGET: met" or "... not met".
verdict() { if [ "$(echo "$1 >= $2" | bc -l)" = 1 ]; then echo "at least $2: met"; else echo "at least $2: not met"; fi; }

# Creates 1,000 files of 4 KiB, PATHPREFIX0000 to PATHPREFIX0999, one after another (open,
# write, close).
create_small() {
    /usr/bin/python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
data = b"s" * 4096
for i in range(1000):
    with open(f"{p}{i:04}", "wb") as f:
        f.write(data)
PY
}

# Waits until a raw listing of the bucket by CLIENT (a bench-client command line, not the
# mount) shows 1,000 keys under PREFIX; gives up after 30 minutes.
wait_listed() {
    local prefix=$1 client=$2 deadline=$(($(date +%s) + 1800))
    until [ "$($client count "$prefix")" -ge 1000 ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "bench.sh: $prefix: 1,000 keys not listed after 30 minutes" >&2
            exit 1
        fi
        sleep 0.05
    done
}

small_files() {
    # 1,000 files of 4 KiB created, read back and removed; creation counts until the store
    # lists all of them (rclone uploads after close). Files go in the root: s3fs cannot see
    # directories that s3s-fs made from markers.
    local t; t=$(now)
    create_small "$MNT/small-$1-"
    wait_listed "small-$1-" "$RAW"
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

# Issue 13: 1,000 x 4 KiB files created in the root of the mount, timed from the first create
# until a raw listing of the bucket shows every key. The listing goes straight to the server
# (in WAN mode from inside its namespace): the poll pays no added round trip of its own.
# Then (issue 16) the 1,000 files are removed by one rm through the mount, timed until the raw
# listing shows none of them (xosfs --write-back deletes after rm returns).
# Prints the seconds to create, how many of the objects were not 4 KiB on the server's disk
# when the listing was complete (placeholders listed before their data: 0 is expected), and
# the seconds to remove. TAG names the keys: created-TAG-0000 and on.
created_listed() {
    local prefix=created-$1- t s short r
    sync
    t=$(now)
    create_small "$MNT/$prefix"
    wait_listed "$prefix" "$SEED_RAW"
    s=$(secs "$t")
    short=$(find "$WORK/data/bench" -maxdepth 1 -name "$prefix*" ! -size 4096c | wc -l)
    t=$(now)
    rm -rf "$MNT/$prefix"*
    until [ "$($SEED_RAW count "$prefix")" -eq 0 ]; do sleep 0.02; done
    r=$(secs "$t")
    echo "$s $short $r"
}

# Issue 15: the ${SIZE_MIB} MiB object read, and the source written (conv=fsync), through a
# fresh xosfs mount capped at CAP_DOWN:CAP_UP MiB/s. The write's fsync also waits for the
# server to assemble the parts into the object, which the cap has nothing to do with, so the
# upload's own rate is taken too: the mount's xosfs_bytes_up_total, sampled every 0.5 s from
# its metrics endpoint, over the samples taken while the parts were being sent. Prints the
# read's and the write's seconds and the upload's MiB/s.
capped() {
    local pid t read write port sampler
    port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pid=$(mount_xosfs "$WORK/xosfs-cache" --max-bandwidth "${CAP_DOWN}M:${CAP_UP}M" --metrics-addr "127.0.0.1:$port") || exit 1
    drop_caches
    t=$(now); cat "$MNT/big.bin" >/dev/null; read=$(secs "$t")
    /usr/bin/python3 - "$port" >"$WORK/up.samples" <<'PY' &
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
while True:
    text = urllib.request.urlopen(url).read().decode()
    sent = next(float(l.split()[-1]) for l in text.splitlines() if l.startswith("xosfs_bytes_up_total"))
    print(time.time(), sent, flush=True)
    time.sleep(0.5)
PY
    sampler=$!
    t=$(now); dd if="$WORK/src.bin" of="$MNT/capped.bin" bs=8M conv=fsync status=none; write=$(secs "$t")
    kill "$sampler"
    rm "$MNT/capped.bin"
    unmount_fs "$pid"
    upload=$(/usr/bin/python3 - "$WORK/up.samples" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
final = rows[-1][1]
sending = [r for r in rows if 0 < r[1] < final]
(t0, b0), (t1, b1) = sending[0], sending[-1]
print("%.1f" % ((b1 - b0) / (t1 - t0) / 2**20))
PY
)
    echo "$read $write $upload"
}

# Issue 13: one sequential write of the ${SIZE_MIB} MiB source through a fresh xosfs mount
# with its staging files in CACHE_DIR (and any further flags), as the main table's write;
# prints the seconds. The file's size is checked and it is removed afterwards, untimed.
timed_write() {
    local pid t s
    pid=$(mount_xosfs "$@") || exit 1
    sync
    t=$(now)
    if ! dd if="$WORK/src.bin" of="$MNT/limit.bin" bs=8M conv=fsync status=none; then
        echo "bench.sh: the write with xosfs $* failed" >&2
        exit 1
    fi
    s=$(secs "$t")
    if [ "$(stat -c %s "$MNT/limit.bin")" != $((SIZE_MIB << 20)) ]; then
        echo "bench.sh: the write with xosfs $* left a file of the wrong size" >&2
        exit 1
    fi
    rm "$MNT/limit.bin"
    unmount_fs "$pid"
    echo "$s"
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
    reads=() randoms=() read_cpu=() read_waste=() random_waste=()
    for r in $(seq "$REPEAT"); do
        unmount_fs "$pid"; raw_samples
        drop_caches; pid=$(mount_fs "$fs")
        c=$(cpu_secs "$pid") b=$(served)
        t=$(now); cat "$MNT/big.bin" >/dev/null; reads+=("$(secs "$t")")
        read_cpu+=("$(echo "($(cpu_secs "$pid") - $c) * 1024 / $SIZE_MIB" | bc -l)")
        read_waste+=("$(mib "$(($(served) - b - (SIZE_MIB << 20)))")")
        if [ "$r" = "$REPEAT" ]; then # the last mount also re-reads, for the warm figure
            t=$(now); cat "$MNT/big.bin" >/dev/null; R[$fs,reread]=$(secs "$t")
            R[$fs,rss_read]=$(hwm "$pid")
        fi
        peak=$(max "$peak" "$(hwm "$pid")")
        unmount_fs "$pid"; drop_caches; pid=$(mount_fs "$fs")
        b=$(served)
        # fio's own runtime of the reads, like the raw client's timing of its GETs: the
        # wall time of the fio process adds its start-up, as much as the reads themselves.
        randoms+=("$(fio --name=rand --filename="$MNT/big.bin" --rw=randread --bs=64k --io_size=16m \
            --size=$((SIZE_MIB))m --ioengine=psync --readonly --randrepeat=1 --output-format=json |
            /usr/bin/python3 -c 'import json, sys; print("%.3f" % (json.load(sys.stdin)["jobs"][0]["read"]["runtime"] / 1000))')")
        random_waste+=("$(mib "$(($(served) - b - (16 << 20)))")")
        peak=$(max "$peak" "$(hwm "$pid")")
    done
    R[$fs,read]=$(median "${reads[@]}") R[$fs,random]=$(median "${randoms[@]}")
    R[$fs,cpu_read]=$(median "${read_cpu[@]}")
    R[$fs,waste_read]=$(median "${read_waste[@]}") R[$fs,waste_random]=$(median "${random_waste[@]}")
    # A fresh mount for the write, so its peak is the writer's, not the read cache's.
    unmount_fs "$pid"; pid=$(mount_fs "$fs")
    c=$(cpu_secs "$pid")
    t=$(now); dd if="$WORK/src.bin" of="$MNT/write-$fs.bin" bs=8M conv=fsync status=none; R[$fs,write]=$(secs "$t")
    R[$fs,cpu_write]=$(echo "($(cpu_secs "$pid") - $c) * 1024 / $SIZE_MIB" | bc -l | xargs printf "%.3f")
    R[$fs,rss_write]=$(hwm "$pid")
    R[$fs,small]=$(small_files "$fs")
    R[$fs,rss]=$(max "$peak" "$(hwm "$pid")")
    unmount_fs "$pid"
done

# Issue 13's scenarios, each on a fresh mount, SMALL_REPEAT rounds of every filesystem in
# turn (so this machine's drift falls on all alike), the median of each. xosfs runs without
# and with --write-back.
declare -A CREATED REMOVED SHORT
for round in $(seq "$SMALL_REPEAT"); do
    for fs in $FILESYSTEMS; do
        tags=("$fs")
        [ "$fs" = xosfs ] && tags+=(xosfs_wb)
        for tag in "${tags[@]}"; do
            echo "== $tag: 1,000 x 4 KiB created until listed, round $round of $SMALL_REPEAT"
            if [ "$tag" = xosfs_wb ]; then pid=$(mount_fs xosfs --write-back); else pid=$(mount_fs "$fs"); fi
            read -r c short r <<<"$(created_listed "$tag-$round")"
            CREATED[$tag]+=" $c" REMOVED[$tag]+=" $r" SHORT[$tag]=$((${SHORT[$tag]:-0} + short))
            unmount_fs "$pid"
        done
    done
done
for tag in "${!CREATED[@]}"; do
    # shellcheck disable=SC2086 # the lists are words
    R[$tag,created]=$(median ${CREATED[$tag]}) R[$tag,removed]=$(median ${REMOVED[$tag]})
    R[$tag,created_short]=${SHORT[$tag]}
done
if [[ " $FILESYSTEMS " = *" xosfs "* ]]; then
    mkdir -p "$UNLIMITED_CACHE"
    mount -t tmpfs -o "size=$((SIZE_MIB + LIMIT_MIB))m,mode=0700" xosfs-bench-cache "$UNLIMITED_CACHE"
    CACHE_FS=$(stat -f -c %T "$UNLIMITED_CACHE") # where the unlimited run's cache dir lives
    echo "== xosfs: ${SIZE_MIB} MiB write, cache dir on a ${LIMIT_MIB} MiB tmpfs and --cache-limit ${LIMIT_MIB}M, and without"
    mkdir -p "$LIMITED_CACHE"
    mount -t tmpfs -o "size=${LIMIT_MIB}m,mode=0700" xosfs-bench-cache "$LIMITED_CACHE"
    # Alternating, so this machine's drift over the run falls on both alike.
    unlimited=() limited=()
    for _ in $(seq "$REPEAT"); do
        s=$(timed_write "$UNLIMITED_CACHE"); unlimited+=("$s")
        s=$(timed_write "$LIMITED_CACHE" --cache-limit "${LIMIT_MIB}M"); limited+=("$s")
    done
    umount "$LIMITED_CACHE" 2>/dev/null || umount -l "$LIMITED_CACHE"
    umount "$UNLIMITED_CACHE" 2>/dev/null || umount -l "$UNLIMITED_CACHE"
    R[xosfs,write_unlimited]=$(median "${unlimited[@]}") R[xosfs,write_limited]=$(median "${limited[@]}")
    echo "== xosfs: ${SIZE_MIB} MiB read and written with --max-bandwidth ${CAP_DOWN}M:${CAP_UP}M"
    read -r "R[xosfs,capped_read]" "R[xosfs,capped_write]" "R[xosfs,capped_upload]" <<<"$(capped)"
fi

# Issue 16: a re-read after a remount with --disk-cache (filled by a first read on the mount
# before), against the cold read; this machine's caches are dropped in between, so the blocks
# come from the disk itself.
if [[ " $FILESYSTEMS " = *" xosfs "* ]]; then
    echo "== xosfs: re-read after a remount with --disk-cache"
    drop_caches; pid=$(mount_fs xosfs --disk-cache "$WORK/disk-cache")
    cat "$MNT/big.bin" >/dev/null
    unmount_fs "$pid"
    drop_caches; pid=$(mount_fs xosfs --disk-cache "$WORK/disk-cache")
    b=$(served)
    t=$(now); cat "$MNT/big.bin" >/dev/null; R[xosfs,disk_reread]=$(secs "$t")
    R[xosfs,disk_reread_fetched]=$(mib "$(($(served) - b))")
    unmount_fs "$pid"
fi

# Issue 16's probes: programs that look at a file without reading it through. Each on a fresh
# mount after dropping caches; the bytes it read are counted by strace (reads of big.bin),
# the bytes fetched by the server, once the daemon has unmounted (its fetches are over).
PROBES="head file ends"
command -v ffprobe >/dev/null && PROBES+=" ffprobe"
probe() {
    case $1 in
    head) head -c 1M "$MNT/big.bin" ;;
    file) file "$MNT/big.bin" ;;
    ends) dd if="$MNT/big.bin" bs=1M count=1 status=none; dd if="$MNT/big.bin" bs=1M skip=$((SIZE_MIB - 1)) status=none ;;
    ffprobe) ffprobe -v quiet "$MNT/big.bin" || true ;;
    esac
}
export -f probe
for fs in $FILESYSTEMS; do
    for p in $PROBES; do
        echo "== $fs: probe $p"
        drop_caches; pid=$(mount_fs "$fs")
        b=$(served)
        MNT=$MNT SIZE_MIB=$SIZE_MIB strace -f -qq -y -e trace=read,pread64,readv,preadv,preadv2 -o "$WORK/probe.strace" \
            bash -c "probe $p" >/dev/null 2>&1
        R[$fs,probe_read_$p]=$(awk -v f="$MNT/big.bin>" 'index($0, f) && $NF > 0 { s += $NF } END { print s + 0 }' "$WORK/probe.strace")
        unmount_fs "$pid"
        R[$fs,probe_fetched_$p]=$(($(served) - b))
    done
done

R[raw,read]=$(median "${raw_reads[@]}") R[raw,random]=$(median "${raw_randoms[@]}")
R[raw,reread]=${R[raw,read]}

if [ "$WAN" = 0 ]; then
    OUT=bench/results.md PNG=bench/ratios.png FETCHED_PNG=bench/fetched.png
    WHERE="local s3s-fs endpoint"
else
    OUT=bench/results-wan.md PNG=bench/ratios-wan.png FETCHED_PNG=bench/fetched-wan.png
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
    echo
    echo "## Issue 13: small files until listed, a write under a cache limit"
    echo
    echo "Created until listed: 1,000 files of 4 KiB written one after another (open, write, close)"
    echo "in the root of a fresh mount, timed from the first create until a raw listing of the"
    echo "bucket (xosfs-bench-client count: ListObjects straight to the server, not through the"
    echo "mount) shows all 1,000 keys, polled every 50 ms once the last close has returned. With"
    echo "--write-back xosfs returns from close once the file is in its local journal; rclone"
    echo "(--vfs-cache-mode writes, its default --vfs-write-back 5s) also returns before uploading."
    echo "The median of $SMALL_REPEAT rounds, each round every filesystem in turn on a fresh mount;"
    echo "a count of files not 4 KiB when listed is the sum over the rounds."
    if [ -n "${R[xosfs,write_limited]:-}" ]; then
        echo "Cache limit: ${SIZE_MIB} MiB written by dd (8 MiB blocks, conv=fsync) through a fresh xosfs"
        echo "mount, with the cache dir on a $CACHE_FS with room for the whole file and no limit, or on a"
        echo "${LIMIT_MIB} MiB tmpfs with --cache-limit ${LIMIT_MIB}M; the median of $REPEAT each, alternating."
    fi
    echo "Higher is better; seconds in brackets."
    echo
    echo "| workload | figure | issue 13 target |"
    echo "|---|---|---|"
    for tag in xosfs xosfs_wb s3fs rclone; do
        [ -n "${R[$tag,created]:-}" ] || continue
        name=$tag; [ "$tag" = xosfs_wb ] && name="xosfs --write-back"
        printf "| 1,000 x 4 KiB created until listed, %s | %.0f files/s (%s s)" \
            "$name" "$(echo "1000 / ${R[$tag,created]}" | bc -l)" "${R[$tag,created]}"
        [ "${R[$tag,created_short]}" = 0 ] || printf "; %s of 1,000 not 4 KiB when listed" "${R[$tag,created_short]}"
        echo " | |"
    done
    for peer in s3fs rclone; do
        [ -n "${R[xosfs_wb,created]:-}" ] && [ -n "${R[$peer,created]:-}" ] || continue
        ratio=$(echo "${R[$peer,created]} / ${R[xosfs_wb,created]}" | bc -l | xargs printf "%.2f")
        target="" # issue 13: at least 5x s3fs locally, at least 2x rclone with --wan
        if [ "$peer" = s3fs ] && [ "$WAN" = 0 ]; then target=$(verdict "$ratio" 5); fi
        if [ "$peer" = rclone ] && [ "$WAN" = 1 ]; then target=$(verdict "$ratio" 2); fi
        printf "| created until listed, xosfs --write-back / %s | %s | %s |\n" "$peer" "$ratio" "$target"
    done
    if [ -n "${R[xosfs,write_limited]:-}" ]; then
        printf "| %s MiB sequential write + fsync, xosfs, no cache limit | %.1f MiB/s (%s s) | |\n" \
            "$SIZE_MIB" "$(echo "$SIZE_MIB / ${R[xosfs,write_unlimited]}" | bc -l)" "${R[xosfs,write_unlimited]}"
        printf "| %s MiB sequential write + fsync, xosfs, cache dir on a %s MiB tmpfs, --cache-limit %sM | %.1f MiB/s (%s s) | |\n" \
            "$SIZE_MIB" "$LIMIT_MIB" "$LIMIT_MIB" "$(echo "$SIZE_MIB / ${R[xosfs,write_limited]}" | bc -l)" "${R[xosfs,write_limited]}"
        ratio=$(echo "${R[xosfs,write_unlimited]} / ${R[xosfs,write_limited]}" | bc -l | xargs printf "%.2f")
        printf "| sequential write, --cache-limit %sM / no limit | %s | %s |\n" "$LIMIT_MIB" "$ratio" "$(verdict "$ratio" 0.9)"
    fi
    echo
    echo "## Issue 16: removing 1,000 files; issue 15: a bandwidth cap"
    echo
    echo "Removed until unlisted: the 1,000 files created above removed by one \`rm -rf\` through the"
    echo "mount, timed until the raw listing shows none of them (the median of $SMALL_REPEAT rounds). Capped: the ${SIZE_MIB} MiB object read"
    echo "(cat, caches dropped) and written (dd, 8 MiB blocks, conv=fsync) through a fresh xosfs mount"
    echo "with --max-bandwidth ${CAP_DOWN}M:${CAP_UP}M, as a share of the cap (issue 15: within 10 %). The"
    echo "write's rate is the mount's own count of bytes sent (xosfs_bytes_up_total, sampled every"
    echo "0.5 s) while parts were being sent; dd's time also holds the server assembling the parts."
    echo
    echo "| workload | figure | target |"
    echo "|---|---|---|"
    for tag in xosfs xosfs_wb s3fs rclone; do
        [ -n "${R[$tag,removed]:-}" ] || continue
        name=$tag; [ "$tag" = xosfs_wb ] && name="xosfs --write-back"
        printf "| rm -rf 1,000 files until unlisted, %s | %.0f files/s (%s s) | |\n" \
            "$name" "$(echo "1000 / ${R[$tag,removed]}" | bc -l)" "${R[$tag,removed]}"
    done
    for tag in xosfs xosfs_wb; do
        [ -n "${R[$tag,removed]:-}" ] && [ -n "${R[s3fs,removed]:-}" ] || continue
        name=$tag; [ "$tag" = xosfs_wb ] && name="xosfs --write-back"
        ratio=$(echo "${R[s3fs,removed]} / ${R[$tag,removed]}" | bc -l | xargs printf "%.2f")
        printf "| rm -rf, %s / s3fs | %s | %s |\n" "$name" "$ratio" "$(verdict "$ratio" 2)"
    done
    if [ -n "${R[xosfs,capped_read]:-}" ]; then
        within() { if [ "$(echo "$1 >= 0.9 && $1 <= 1.1" | bc -l)" = 1 ]; then echo "within 10 %: met"; else echo "within 10 %: not met"; fi; }
        rate=$(echo "$SIZE_MIB / ${R[xosfs,capped_read]}" | bc -l)
        share=$(echo "$rate / $CAP_DOWN" | bc -l | xargs printf "%.2f")
        printf "| %s MiB read (cat) capped at %s MiB/s | %.1f MiB/s (%s s), %s of the cap | %s |\n" \
            "$SIZE_MIB" "$CAP_DOWN" "$rate" "${R[xosfs,capped_read]}" "$share" "$(within "$share")"
        share=$(echo "${R[xosfs,capped_upload]} / $CAP_UP" | bc -l | xargs printf "%.2f")
        printf "| %s MiB write capped at %s MiB/s: upload rate while sending | %s MiB/s, %s of the cap | %s |\n" \
            "$SIZE_MIB" "$CAP_UP" "${R[xosfs,capped_upload]}" "$share" "$(within "$share")"
        printf "| the same write, dd to the end of fsync (the server's assembly of the parts included) | %.1f MiB/s (%s s) | |\n" \
            "$(echo "$SIZE_MIB / ${R[xosfs,capped_write]}" | bc -l)" "${R[xosfs,capped_write]}"
    fi
    echo
    echo "## Issue 16: CPU and bytes fetched"
    echo
    echo "CPU: the daemon's user + system seconds (/proc/PID/stat) over the cold read (median of $REPEAT)"
    echo "and over the write, per GiB. Wasted: MiB the server sent beyond what the workload read"
    echo "(the median of $REPEAT; random reads: 256 x 64 KiB). Probes, each on a fresh mount after"
    echo "dropping caches: MiB fetched (the server's count, once the daemon has unmounted) / MiB the"
    echo "probe read (strace's count of its reads of the file); ends = the first and the last MiB"
    echo "(dd), as thumbnailers read them$(command -v ffprobe >/dev/null || echo "; ffprobe is not installed here"). Issue 16's"
    echo "target for xosfs: fetched <= 2 x read + one first window (one block, 1 MiB). Disk cache: the"
    echo "big object read once on a mount with --disk-cache, then, after a remount and a drop of this"
    echo "machine's caches, read again: its speed as a multiple of the cold read's."
    echo
    printf "| workload |"; for fs in $FILESYSTEMS; do printf " %s |" "$fs"; done; echo
    printf "|---|"; for _ in $FILESYSTEMS; do printf -- "---|"; done; echo
    printf "| CPU s per GiB, cold sequential read |"; for fs in $FILESYSTEMS; do printf " %.2f |" "${R[$fs,cpu_read]}"; done; echo
    printf "| CPU s per GiB, sequential write + fsync |"; for fs in $FILESYSTEMS; do printf " %.2f |" "${R[$fs,cpu_write]}"; done; echo
    printf "| wasted MiB, cold sequential read |"; for fs in $FILESYSTEMS; do printf " %.1f |" "${R[$fs,waste_read]}"; done; echo
    printf "| wasted MiB, random 64 KiB reads |"; for fs in $FILESYSTEMS; do printf " %.1f |" "${R[$fs,waste_random]}"; done; echo
    if [ -n "${R[xosfs,disk_reread]:-}" ]; then
        ratio=$(echo "${R[xosfs,read]} / ${R[xosfs,disk_reread]}" | bc -l | xargs printf "%.2f")
        printf "| re-read after a remount with --disk-cache, x the cold read (s; MiB fetched) |"
        for fs in $FILESYSTEMS; do
            if [ "$fs" = xosfs ]; then
                printf " %s (%s s; %s MiB; at least 3: %s) |" "$ratio" "${R[xosfs,disk_reread]}" \
                    "${R[xosfs,disk_reread_fetched]}" "$(verdict "$ratio" 3 | sed 's/at least 3: //')"
            else printf " |"; fi
        done
        echo
    fi
    for p in $PROBES; do
        printf "| probe %s: MiB fetched / read |" "$p"
        for fs in $FILESYSTEMS; do
            fetched=${R[$fs,probe_fetched_$p]} read=${R[$fs,probe_read_$p]}
            printf " %s / %s" "$(mib "$fetched")" "$(mib "$read")"
            if [ "$fs" = xosfs ]; then
                if [ "$fetched" -le $((2 * read + (1 << 20))) ]; then printf " (target met)"; else printf " (target not met)"; fi
            fi
            printf " |"
        done
        echo
    done
} | tee "$OUT"

/usr/bin/python3 - "$OUT" "$PNG" <<'PY'
import re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
# The first table only: the issue 13 table below it has figures of its own, not ratios.
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith("| workload"))
end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
header, rows = lines[start], [l for l in lines[start + 2:end] if "RSS" not in l]
names, series = [], {}
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
# Issue 16's table: probes as fetched/read ratios, wasted MiB, CPU per GiB.
/usr/bin/python3 - "$OUT" "$FETCHED_PNG" <<'PY'
import re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith("## Issue 16"))
start = next(i for i in range(start, len(lines)) if lines[i].startswith("| workload"))
end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
fss = [c.strip() for c in lines[start].strip().strip("|").split("|")][1:]
rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in lines[start + 2:end]]
def ratio(cell):
    fetched, read = (float(x) for x in re.findall(r"[\d.]+", cell)[:2])
    return fetched / max(read, 0.1)
panels = [
    ("probes: MiB fetched / MiB read", [r for r in rows if r[0].startswith("probe")], ratio),
    ("wasted read-ahead, MiB", [r for r in rows if r[0].startswith("wasted")], float),
    ("daemon CPU seconds per GiB", [r for r in rows if r[0].startswith("CPU")], float),
]
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for ax, (title, sel, value) in zip(axes, panels):
    w = 0.8 / max(1, len(fss))
    for i, fs in enumerate(fss):
        ax.bar([x + i * w for x in range(len(sel))], [value(r[1 + i]) for r in sel], w, label=fs)
    ax.set_xticks([x + w * (len(fss) - 1) / 2 for x in range(len(sel))])
    ax.set_xticklabels([r[0].split(":")[0] for r in sel], rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
PY
echo "wrote $OUT, $PNG and $FETCHED_PNG"
