#!/usr/bin/env bash
# Install xosfs: the binary, the mount.xosfs helper link, the man pages and shell completions.
#
#   scripts/install.sh               build (cargo build --release) and install
#   scripts/install.sh --no-build    install the existing target/release/xosfs
#   scripts/install.sh --uninstall   remove what an install put in place
#
# PREFIX (default /usr/local) is where the binary, man pages and zsh/fish completions go;
# /sbin/mount.xosfs and the bash completion have fixed places. DESTDIR, for packaging, is
# put in front of every path written; links still point at the final path, and no system
# package is installed then. Without DESTDIR, the install steps run through sudo when not
# root (the build never does).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
build=1
uninstall=0
for arg in "$@"; do
    case $arg in
        --no-build) build=0 ;;
        --uninstall) uninstall=1 ;;
        -h | --help)
            sed -n '2,12s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "install.sh: unknown argument '$arg' (see --help)" >&2
            exit 2
            ;;
    esac
done

BIN=$PREFIX/bin/xosfs
HELPER=/sbin/mount.xosfs
MAN1=$PREFIX/share/man/man1/xosfs.1
MAN8=$PREFIX/share/man/man8/mount.xosfs.8
BASH_COMPLETION=/usr/share/bash-completion/completions/xosfs
ZSH_COMPLETION=$PREFIX/share/zsh/site-functions/_xosfs
FISH_COMPLETION=$PREFIX/share/fish/vendor_completions.d/xosfs.fish

# Runs a command that writes to the system, as root when needed.
as_root() {
    if [ -n "$DESTDIR" ] || [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

if [ "$uninstall" -eq 1 ]; then
    removed=0
    for path in "$BIN" "$HELPER" "$MAN1" "$MAN8" "$BASH_COMPLETION" "$ZSH_COMPLETION" "$FISH_COMPLETION"; do
        if [ "$path" = "$HELPER" ] && [ -e "$DESTDIR$path" ] && [ ! -L "$DESTDIR$path" ]; then
            echo "install.sh: warning: $DESTDIR$path is not a symbolic link, so not ours; left alone" >&2
        elif [ -e "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ]; then
            as_root rm -f "$DESTDIR$path"
            echo "removed $DESTDIR$path"
            removed=$((removed + 1))
        fi
    done
    echo "uninstalled xosfs: $removed file(s) removed (fuse3 and /etc/passwd-xosfs are left alone)"
    exit 0
fi

SRC=target/release/xosfs
if [ "$build" -eq 1 ]; then
    command -v cargo >/dev/null || {
        echo "install.sh: cargo is needed to build (https://rustup.rs); or build first and pass --no-build" >&2
        exit 1
    }
    echo "building: cargo build --release --locked --bin xosfs"
    cargo build --release --locked --bin xosfs
fi
[ -x "$SRC" ] || {
    echo "install.sh: $SRC does not exist: build it (cargo build --release --bin xosfs) or drop --no-build" >&2
    exit 1
}

# FUSE's user tools (fusermount3) are needed to mount and unmount; a package declares
# them as a dependency instead.
if command -v fusermount3 >/dev/null; then
    echo "fuse3: fusermount3 found"
elif [ -n "$DESTDIR" ]; then
    echo "fuse3: fusermount3 is missing; not installed into a DESTDIR (declare a dependency on fuse3)"
elif command -v apt-get >/dev/null; then
    echo "fuse3: fusermount3 is missing, installing the fuse3 package"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3
else
    echo "install.sh: warning: fusermount3 is missing and apt-get is not available; install FUSE 3 by hand" >&2
fi

as_root install -D -m 0755 "$SRC" "$DESTDIR$BIN"
echo "installed $DESTDIR$BIN"
as_root mkdir -p "$DESTDIR$(dirname "$HELPER")"
as_root ln -sfn "$BIN" "$DESTDIR$HELPER"
echo "linked $DESTDIR$HELPER -> $BIN (mount -t xosfs and fstab entries use it)"
as_root install -D -m 0644 man/xosfs.1 "$DESTDIR$MAN1"
echo "installed $DESTDIR$MAN1"
as_root install -D -m 0644 man/mount.xosfs.8 "$DESTDIR$MAN8"
echo "installed $DESTDIR$MAN8"

# Completion scripts come from the binary itself. Run it from an empty directory with no
# endpoint in the environment, so that a binary without the subcommand cannot take
# "completions SHELL" for a bucket and a mount point.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src_abs=$(realpath "$SRC")
for entry in "bash:$BASH_COMPLETION" "zsh:$ZSH_COMPLETION" "fish:$FISH_COMPLETION"; do
    shell=${entry%%:*}
    path=${entry#*:}
    if (cd "$tmp" && env -u XOSFS_ENDPOINT timeout 20 "$src_abs" completions "$shell" </dev/null >"$tmp/$shell" 2>"$tmp/$shell.err") &&
        [ -s "$tmp/$shell" ]; then
        as_root install -D -m 0644 "$tmp/$shell" "$DESTDIR$path"
        echo "installed $DESTDIR$path"
    else
        echo "install.sh: warning: 'xosfs completions $shell' failed, $shell completion not installed: $(head -n 1 "$tmp/$shell.err")" >&2
    fi
done

echo "xosfs installed: run 'xosfs --help' or 'man xosfs'; fstab entries of type xosfs are described in mount.xosfs(8)"
