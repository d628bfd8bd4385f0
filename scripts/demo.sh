#!/usr/bin/env bash
# demo.sh: a guided tour of ocivol with bare runc.
#
#   scripts/demo.sh [PATH-TO-OCIVOL-BINARY]      (default: the debug build of this repo)
#
# Runs as root. Everything lives under one `mktemp -d /tmp/ocivol-demo.XXXXXX` directory: ocivol's
# state root and run root, its config, runc's --root, the bundles and the sample base directory.
# The host's real state (/var/lib/ocivol, /run/ocivol, /run/runc) is never touched. On any exit
# (success, failed check, error, Ctrl-C) the EXIT trap deletes every container it created, unmounts
# whatever is still mounted under that directory and removes it.
#
# Needs only bash, coreutils, grep, find, sha256sum, runc and a static busybox (/bin/busybox).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OCIVOL=${1:-$SCRIPT_DIR/../target/x86_64-unknown-linux-musl/debug/ocivol}
RUNC=${RUNC:-/usr/sbin/runc}
BUSYBOX=${BUSYBOX:-/bin/busybox}

# ---------------------------------------------------------------------------------------------
# Output and checks
# ---------------------------------------------------------------------------------------------

STEP=0
step() {
    STEP=$((STEP + 1))
    printf '\n== %d. %s ==\n' "$STEP" "$1"
}
say() { printf '%s\n' "$*"; }
# Prints its arguments (or stdin) indented, as evidence.
evidence() {
    if [ $# -gt 0 ]; then printf '%s\n' "$@"; else cat; fi | sed 's/^/      /'
}
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}
ok() { printf '   ok: %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || fail "demo.sh must run as root (it mounts overlays and runs runc)"
[ -x "$OCIVOL" ] || fail "no ocivol binary at $OCIVOL (build it, or pass its path as the first argument)"
OCIVOL=$(cd "$(dirname "$OCIVOL")" && pwd)/$(basename "$OCIVOL")
[ -x "$RUNC" ] || fail "runc not found at $RUNC (apt-get install runc)"
[ -x "$BUSYBOX" ] || fail "busybox not found at $BUSYBOX (apt-get install busybox-static)"

# ---------------------------------------------------------------------------------------------
# The demo directory and its cleanup
# ---------------------------------------------------------------------------------------------

T=$(mktemp -d /tmp/ocivol-demo.XXXXXX)
TAG=${T##*.}            # the random part, keeps cgroup names of parallel runs apart
CONTAINERS=()           # every container ID this script started
CLEANED=0

# shellcheck source=mounts.sh
source "$SCRIPT_DIR/mounts.sh"

cleanup() {
    local rc=$? id
    [ "$CLEANED" = 1 ] && return 0
    CLEANED=1
    set +e
    if [ "$rc" != 0 ]; then
        printf '\n== cleanup after failure (exit %d) ==\n' "$rc" >&2
    fi
    for id in "${CONTAINERS[@]}"; do
        "$RUNC" --root "$T/runc" delete --force "$id" >/dev/null 2>&1
    done
    unmount_all_under_t
    if [ -n "$(mounts_under_t)" ]; then
        printf 'cleanup: mounts left under %s, not removing it:\n' "$T" >&2
        mounts_under_t >&2
    else
        rm -rf "$T"
    fi
    if [ "$rc" != 0 ]; then
        printf 'cleanup: done (%s %s)\n' "$T" "$([ -e "$T" ] && echo 'still exists' || echo removed)" >&2
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Bundles
# ---------------------------------------------------------------------------------------------

# A JSON string literal for $1.
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}

# write_config BUNDLE ID VOLUMES-ANNOTATION ARG...: writes BUNDLE/config.json (runc 1.1 shape,
# as `runc spec` makes it, with terminal off, a writable rootfs and our annotation).
write_config() {
    local bundle=$1 id=$2 volumes=$3
    shift 3
    local args="" a
    for a in "$@"; do
        args+="${args:+, }$(json_str "$a")"
    done
    cat >"$bundle/config.json" <<EOF
{
	"ociVersion": "1.0.2",
	"process": {
		"terminal": false,
		"user": { "uid": 0, "gid": 0 },
		"args": [ $args ],
		"env": [ "PATH=/bin" ],
		"cwd": "/",
		"capabilities": {
			"bounding": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"effective": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"permitted": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
			"ambient": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ]
		},
		"rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
		"noNewPrivileges": true
	},
	"root": { "path": "rootfs", "readonly": false },
	"hostname": $(json_str "$id"),
	"mounts": [
		{ "destination": "/proc", "type": "proc", "source": "proc" },
		{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
		  "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
		{ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
		  "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" ] },
		{ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
		  "options": [ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" ] },
		{ "destination": "/sys", "type": "sysfs", "source": "sysfs",
		  "options": [ "nosuid", "noexec", "nodev", "ro" ] }
	],
	"annotations": {
		"io.ocivol.volumes": $(json_str "$volumes")
	},
	"linux": {
		"cgroupsPath": $(json_str "/ocivol-demo-$TAG-$id"),
		"resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
		"namespaces": [
			{ "type": "pid" },
			{ "type": "network" },
			{ "type": "ipc" },
			{ "type": "uts" },
			{ "type": "mount" }
		],
		"maskedPaths": [
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
		]
	}
}
EOF
}

# make_bundle ID VOLUMES ARG...: a fresh bundle $T/bundles/ID with a busybox rootfs.
make_bundle() {
    local id=$1 b=$T/bundles/$1 tool
    mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys" "$b/rootfs/tmp"
    cp "$BUSYBOX" "$b/rootfs/bin/busybox"
    for tool in sh cat ls echo sleep touch mkdir rm test find sort sha256sum xargs hostname; do
        ln -s busybox "$b/rootfs/bin/$tool"
    done
    shift
    write_config "$b" "$id" "$@"
}

# The ocivol runtime wrapper, pointed at the demo's own state.
ocivol_runtime() {
    "$OCIVOL" --config "$T/config.toml" --root "$T/root" --run-root "$T/run" \
        runtime --root "$T/runc" "$@"
}

# start ID VOLUMES: a detached container whose init is `sleep 600`.
start() {
    local id=$1 volumes=$2
    make_bundle "$id" "$volumes" sleep 600
    CONTAINERS+=("$id")
    say "   \$ ocivol runtime run -d $id      (io.ocivol.volumes=\"$volumes\")"
    ocivol_runtime run -d --bundle "$T/bundles/$id" "$id" </dev/null >"$T/$id.out" 2>&1 ||
        fail "could not start container $id: $(cat "$T/$id.out")"
}

# inside ID SCRIPT: runs SCRIPT with sh inside the running container ID; output in $OUT.
OUT=""
inside() {
    local id=$1 script=$2
    say "   [$id]\$ $script"
    OUT=$("$RUNC" --root "$T/runc" exec "$id" sh -c "$script" </dev/null 2>&1) ||
        { evidence "$OUT"; fail "command in container $id failed: $script"; }
    [ -z "$OUT" ] || evidence "$OUT"
}

# oneshot ID VOLUMES SCRIPT: a foreground container running SCRIPT; output in $OUT.
oneshot() {
    local id=$1 volumes=$2 script=$3
    make_bundle "$id" "$volumes" sh -c "$script"
    CONTAINERS+=("$id")
    say "   \$ ocivol runtime run $id      (io.ocivol.volumes=\"$volumes\")"
    say "   [$id]\$ $script"
    OUT=$(ocivol_runtime run --bundle "$T/bundles/$id" "$id" </dev/null 2>&1) ||
        { evidence "$OUT"; fail "one-shot container $id failed"; }
    [ -z "$OUT" ] || evidence "$OUT"
}

# remove ID: `ocivol runtime delete --force ID` (runc deletes it, ocivol releases its volumes).
remove() {
    local id=$1 out
    say "   \$ ocivol runtime delete --force $id"
    out=$(ocivol_runtime delete --force "$id" </dev/null 2>&1) ||
        { evidence "$out"; fail "could not delete container $id"; }
    [ -z "$out" ] || evidence "$out"
}

# The directory of volume $2 under state root $1 ($T/root or $T/run). Names belong to a scope:
# the `shared` of the demo's runc root is stored as shared@HASH; a shared one as `shared`.
voldir() {
    local d
    for d in "$1/volumes/$2" "$1/volumes/$2"@*; do
        [ -e "$d" ] && { printf '%s\n' "$d"; return; }
    done
    printf '%s\n' "$1/volumes/$2"
}

# Overlay mountinfo lines whose mount point is the merged directory of volume $1.
overlay_lines() {
    local merged line mp fstype
    merged=$(voldir "$T/run" "$1")/merged
    while IFS= read -r line; do
        mp=$(cut -d' ' -f5 <<<"$line")
        mp=$(printf '%b' "${mp//\\/\\0}")
        fstype=${line#* - }
        fstype=${fstype%% *}
        if [ "$mp" = "$merged" ] && [ "$fstype" = overlay ]; then
            printf '%s\n' "$line"
        fi
    done </proc/self/mountinfo
}
overlay_count() { overlay_lines "$1" | grep -c . || true; }

# Number of users of volume $1 (entries of RUNROOT/volumes/NAME/users; 0 if it does not exist).
user_count() {
    local d
    d=$(voldir "$T/run" "$1")/users
    if [ -d "$d" ]; then find "$d" -mindepth 1 -maxdepth 1 | wc -l; else echo 0; fi
}

# find | sort and sha256sum of every file of the directory $1, paths relative to it.
snapshot() {
    (cd "$1" && find . | sort && find . -type f | sort | xargs -r sha256sum)
}

# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------

say "ocivol demo"
say "  ocivol:    $OCIVOL"
say "  runc:      $RUNC ($("$RUNC" --version | head -n1))"
say "  work dir:  $T   (ocivol --root $T/root, --run-root $T/run, runc --root $T/runc)"

mkdir -p "$T/root" "$T/run" "$T/runc" "$T/bundles"
# (A JSON string literal is a TOML basic string too.)
cat >"$T/config.toml" <<EOF
runtime = $(json_str "$RUNC")
[policy]
allowed_bases = [$(json_str "$T/base")]
EOF
say "  config:    $T/config.toml: $(tr '\n' ' ' <"$T/config.toml")"

# ---------------------------------------------------------------------------------------------
step "A sample base directory"
# ---------------------------------------------------------------------------------------------
say "   A copy-on-write volume is layered over a host directory, its base. ocivol must never"
say "   write to it. We record its listing and checksums to compare with at the end."
mkdir -p "$T/base/etc"
printf 'hello from the base\n' >"$T/base/readme.txt"
printf 'answer=42\n' >"$T/base/etc/app.conf"
BASE_SNAPSHOT=$(snapshot "$T/base")
say "   \$ (cd $T/base && find . | sort && find . -type f | sort | xargs sha256sum)"
evidence "$BASE_SNAPSHOT"
BASE_LIST=$(cd "$T/base" && find . | sort)

# ---------------------------------------------------------------------------------------------
step "Two running containers share one copy-on-write volume"
# ---------------------------------------------------------------------------------------------
SHARED="shared:/data:base=$T/base"
say "   Containers A and B both ask for \"$SHARED\"."
say "   ocivol mounts ONE overlay (lower = the base) and binds it into both, so each"
say "   container sees the other's writes at once."
start demo-a "$SHARED"
inside demo-a 'ls /data && echo "written by A" > /data/from-a.txt'
start demo-b "$SHARED"
inside demo-b 'ls /data && cat /data/from-a.txt'
grep -qx from-a.txt <<<"$OUT" && [ "$(tail -n1 <<<"$OUT")" = "written by A" ] ||
    fail "container B does not see A's /data/from-a.txt"
ok "B sees the file A wrote"
inside demo-b 'echo "written by B" > /data/from-b.txt'
inside demo-a 'cat /data/from-b.txt'
[ "$OUT" = "written by B" ] || fail "container A does not see B's /data/from-b.txt"
ok "A sees the file B wrote"

SHARED_RUN=$(voldir "$T/run" shared)
say "   Volume names belong to a scope (here: this runc root), so 'shared' is stored as"
say "   ${SHARED_RUN##*/}."
say "   Overlay mounts on $SHARED_RUN/merged (from /proc/self/mountinfo):"
evidence "$(overlay_lines shared)"
n=$(overlay_count shared)
[ "$n" = 1 ] || fail "expected exactly 1 overlay mounted for volume 'shared', found $n"
ok "exactly one overlay for the volume"
say "   \$ ls $SHARED_RUN/users"
evidence "$(ls "$SHARED_RUN/users")"
n=$(user_count shared)
[ "$n" = 2 ] || fail "expected 2 users of volume 'shared', found $n"
ok "the volume has 2 users"

# ---------------------------------------------------------------------------------------------
step "Deleting both containers releases the volume; the base is untouched"
# ---------------------------------------------------------------------------------------------
say "   When the last user leaves, the overlay is unmounted. The base directory never"
say "   changed: the writes went to the volume's upper directory, which a non-volatile"
say "   volume keeps for the next container."
remove demo-a
n=$(user_count shared)
[ "$n" = 1 ] || fail "after deleting A, expected 1 user of 'shared', found $n"
[ "$(overlay_count shared)" = 1 ] || fail "the overlay of 'shared' went away while B still uses it"
ok "after A: 1 user left, overlay still mounted for B"
remove demo-b
n=$(user_count shared)
[ "$n" = 0 ] || fail "after deleting A and B, expected 0 users of 'shared', found $n"
ok "users: 0"
n=$(overlay_count shared)
[ "$n" = 0 ] || fail "after deleting A and B, the overlay of 'shared' is still mounted ($n)"
ok "the overlay is unmounted"

say "   Base directory now:"
NOW=$(snapshot "$T/base")
evidence "$NOW"
[ "$NOW" = "$BASE_SNAPSHOT" ] || fail "the base directory changed (listing or checksums differ from step 1)"
[ ! -e "$T/base/from-a.txt" ] && [ ! -e "$T/base/from-b.txt" ] ||
    fail "from-a.txt or from-b.txt leaked into the base directory"
ok "base identical to step 1, no from-a.txt/from-b.txt in it"

UPPER=$(voldir "$T/root" shared)/upper
say "   \$ ls $UPPER"
evidence "$(ls "$UPPER")"
[ -f "$UPPER/from-a.txt" ] && [ -f "$UPPER/from-b.txt" ] ||
    fail "the changes are not kept in $UPPER"
ok "the changes are kept in the volume's upper directory"

say "   A new one-shot container on the same volume:"
oneshot demo-a2 "$SHARED" 'cat /data/from-a.txt /data/from-b.txt /data/readme.txt'
[ "$OUT" = "written by A
written by B
hello from the base" ] || fail "a new container on 'shared' does not see the kept changes"
ok "the new container sees from-a.txt, from-b.txt and the base files"
[ "$(user_count shared)" = 0 ] && [ "$(overlay_count shared)" = 0 ] ||
    fail "after the one-shot container exited, 'shared' is still in use or mounted"
ok "after it exited: 0 users, no overlay"

# ---------------------------------------------------------------------------------------------
step "A volatile copy-on-write volume forgets its changes"
# ---------------------------------------------------------------------------------------------
SCRATCH="scratch:/work:base=$T/base,volatile"
say "   \"$SCRATCH\": the same layering, but the changes are"
say "   discarded once the last user has left."
start demo-c "$SCRATCH"
inside demo-c 'echo junk > /work/junk && ls /work'
grep -qx junk <<<"$OUT" || fail "container C cannot see the /work/junk it wrote"
ok "C wrote /work/junk"
remove demo-c
n=$(overlay_count scratch)
[ "$n" = 0 ] || fail "after deleting C, the overlay of 'scratch' is still mounted ($n)"
ok "C deleted, overlay unmounted"
oneshot demo-d "$SCRATCH" 'cd /work && find . | sort'
[ "$OUT" = "$BASE_LIST" ] || fail "container D does not see exactly the base files in /work"
ok "D sees only the base files, no junk"
NOW=$(snapshot "$T/base")
[ "$NOW" = "$BASE_SNAPSHOT" ] || fail "the base directory changed during the volatile step"
ok "base still identical to step 1"

# ---------------------------------------------------------------------------------------------
step "A named plain volume outlives its containers"
# ---------------------------------------------------------------------------------------------
NOTES="notes:/notes"
say "   \"$NOTES\": a plain host directory made on first use, kept between containers."
oneshot demo-e "$NOTES" 'echo "kept between containers" > /notes/kept.txt && ls /notes'
oneshot demo-f "$NOTES" 'cat /notes/kept.txt'
[ "$OUT" = "kept between containers" ] || fail "the next container does not read back /notes/kept.txt"
ok "the next container reads /notes/kept.txt back"
NOTES_DATA=$(voldir "$T/root" notes)/data
say "   On the host: \$ ls $NOTES_DATA"
evidence "$(ls "$NOTES_DATA")"

# ---------------------------------------------------------------------------------------------
step "Nothing left behind"
# ---------------------------------------------------------------------------------------------
say "   No container is left in the demo's runc root and nothing is mounted under $T."
say "   \$ runc --root $T/runc list"
evidence "$("$RUNC" --root "$T/runc" list)"
n=$("$RUNC" --root "$T/runc" list -q | grep -c . || true)
[ "$n" = 0 ] || fail "$n container(s) still listed by runc"
ok "no container left"
LEFT=$(mounts_under_t)
[ -z "$LEFT" ] || { evidence "$LEFT"; fail "mounts left under $T"; }
ok "no mount left under $T"
for v in shared scratch notes; do
    n=$(user_count "$v")
    [ "$n" = 0 ] || fail "volume $v still has $n user(s)"
done
ok "no volume has a user"
say "   cleaning up: deleting $T"
cleanup
[ ! -e "$T" ] || fail "$T was not removed"
ok "$T removed"
say ""
say "demo: all steps passed"
