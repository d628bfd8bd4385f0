# bench/lib.sh: what every benchmark of bench/run.sh shares: settings, the temp directory and its
# cleanup, bundles, the timing of commands side by side and the result rows. Sourced, not run.
#
# Everything lives under one `mktemp -d /tmp/ocivol-bench.XXXXXX` directory ($T): ocivol's state
# roots, its configs, runc's --root, podman's roots, bundles and the base directories. On any exit
# (success, error, Ctrl-C, TERM) the EXIT trap deletes every container under our runc and podman
# roots, stops what we started in the background, unmounts everything under $T and removes it.

# ---------------------------------------------------------------------------------------------
# Settings (all overridable from the environment)
# ---------------------------------------------------------------------------------------------

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OCIVOL=${OCIVOL:-$REPO/target/x86_64-unknown-linux-musl/release/ocivol}
RUNC=${RUNC:-/usr/sbin/runc}
BUSYBOX=${BUSYBOX:-/bin/busybox}
TIME_BIN=${TIME_BIN:-/usr/bin/time}
OUT=${BENCH_OUT:-$REPO/target/bench}
QUICK=${BENCH_QUICK:-0}

if [ "$QUICK" = 1 ]; then
    : "${BENCH_RUNS:=3}" "${BENCH_ROUNDS:=1}" "${BENCH_IO_MIB:=4}" "${BENCH_SMALL_FILES:=50}"
    : "${BENCH_PARALLEL:=4}" "${BENCH_PODMAN_RUNS:=2}" "${BENCH_COPYUP_ROUNDS:=1}"
    : "${BENCH_RECORDS:=100}"
else
    : "${BENCH_RUNS:=150}" "${BENCH_ROUNDS:=3}" "${BENCH_IO_MIB:=1024}" "${BENCH_SMALL_FILES:=10000}"
    : "${BENCH_PARALLEL:=100}" "${BENCH_PODMAN_RUNS:=30}" "${BENCH_COPYUP_ROUNDS:=3}"
    : "${BENCH_RECORDS:=10000}"
fi
RUNS=$BENCH_RUNS     # timed runs of each command of a case, interleaved (see `interleaved`)
ROUNDS=$BENCH_ROUNDS # rounds of row 4's parallel creates and deletes

# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

say() { printf '%s\n' "$*" >&2; }
section() { printf '\n== %s ==\n' "$*" >&2; }
fail() {
    printf 'bench: FAILED: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# The temp directory and its cleanup
# ---------------------------------------------------------------------------------------------

T=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/ocivol-bench.XXXXXX")
TAG=${T##*.}              # keeps container IDs (and so cgroup names) of parallel runs apart
BG_PIDS=()                # background processes we started
PODMAN_USED=0
CLEANED=0

# shellcheck source=../scripts/mounts.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/mounts.sh"

# Containers runc still has under our --root.
runc_list_t() {
    [ -d "$RUNC_ROOT" ] || return 0
    "$RUNC" --root "$RUNC_ROOT" list -q 2>/dev/null || true
}

cleanup() {
    local rc=$? id pid
    [ "$CLEANED" = 1 ] && return 0
    CLEANED=1
    set +e
    [ "$rc" != 0 ] && say "" "== cleanup after failure (exit $rc) =="
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    if [ "$PODMAN_USED" = 1 ]; then
        podman_cmd rm --all --force >/dev/null 2>&1
    fi
    for pass in 1 2; do
        for id in $(runc_list_t); do
            # Through the wrapper first, so that ocivol releases what the container held.
            ocivol_rt delete --force "$id" >/dev/null 2>&1 ||
                "$RUNC" --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1
        done
    done
    unmount_all_under_t
    if [ -n "$(mounts_under_t)" ] || [ -n "$(runc_list_t)" ]; then
        say "cleanup: mounts or containers left under $T, not removing it:"
        mounts_under_t >&2
        runc_list_t >&2
    else
        rm -rf "$T"
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# ocivol, runc, bundles
# ---------------------------------------------------------------------------------------------

# State roots and config of the benchmarks (one set; each benchmark uses its own volume names).
ST_ROOT=$T/state/root
# The run roots, ocivol's and runc's, are on a tmpfs as /run is on every host (BENCH_RUN_TMPFS=0:
# on the disk with the rest). Everything else (ocivol's root, bundles, rootfs, bases) is on the
# disk of $T. Mounted at once, so that the cleanup finds it under $T.
RUNFS=$T/run
mkdir -p "$RUNFS"
if [ "${BENCH_RUN_TMPFS:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
    mount -t tmpfs -o mode=0755,size=512m bench-run "$RUNFS"
fi
ST_RUN=$RUNFS/ocivol
RUNC_ROOT=$RUNFS/runc
CONFIG=$T/config.toml
BASES=$T/bases        # every base directory lives below this (the policy's allowed_bases)
HOSTBIND=$T/hostbind  # the policy's allowed_bind_sources
ROOTFS=$T/rootfs

# The runc drop-in, pointed at our state, config and runc root.
# An operator command on the benchmarks' state.
ocivol_cmd() {
    "$OCIVOL" --config "$CONFIG" --root "$ST_ROOT" --run-root "$ST_RUN" "$@" </dev/null
}
ocivol_rt() {
    "$OCIVOL" --config "$CONFIG" --root "$ST_ROOT" --run-root "$ST_RUN" runtime --root "$RUNC_ROOT" "$@"
}
# The same as a word list, for bench/pair.c and xargs.
OCIVOL_RT="$OCIVOL --config $CONFIG --root $ST_ROOT --run-root $ST_RUN runtime --root $RUNC_ROOT"
# The same config with overlay_linger: the cases of containers started one after another.
LINGER=${BENCH_LINGER:-60s}
CONFIG_LINGER=$T/config-linger.toml
OCIVOL_RT_LINGER="$OCIVOL --config $CONFIG_LINGER --root $ST_ROOT --run-root $ST_RUN runtime --root $RUNC_ROOT"
RUNC_RT="$RUNC --root $RUNC_ROOT"

# ocivol's config.toml (a JSON string, as jq's @json writes it, is a TOML basic string too).
write_config_toml() {
    jq -nr --arg runtime "$RUNC" --arg bases "$BASES" --arg hb "$HOSTBIND" \
        '"runtime = \($runtime | @json)\n[policy]\nallowed_bases = [\($bases | @json)]\nallowed_bind_sources = [\($hb | @json)]"' >"$CONFIG"
    { printf 'overlay_linger = "%s"\n' "$LINGER"; cat "$CONFIG"; } >"$CONFIG_LINGER"
}

make_rootfs() {
    local tool
    mkdir -p "$ROOTFS/bin" "$ROOTFS/proc" "$ROOTFS/dev" "$ROOTFS/sys" "$ROOTFS/tmp" "$ROOTFS/etc"
    cp "$BUSYBOX" "$ROOTFS/bin/busybox"
    for tool in sh true sleep cat ls; do
        ln -s busybox "$ROOTFS/bin/$tool"
    done
}

# `runc spec`'s config, without a terminal and with a writable root.
make_template() {
    mkdir -p "$T/template"
    "$RUNC" spec --bundle "$T/template"
    jq '.process.terminal = false | .root.readonly = false' "$T/template/config.json" >"$T/template.json"
}

# make_bundle NAME ID ARGS-JSON ANNOTATIONS-JSON [EXTRA-MOUNTS-JSON [HOOKS-JSON]]: prints the
# bundle's path. The rootfs is shared by every bundle; the cgroup is named after the ID.
make_bundle() {
    local name=$1 id=$2 args=$3 ann=$4 mounts=${5:-[]} hooks=${6:-null} b=$T/bundles/$1
    mkdir -p "$b"
    jq --arg root "$ROOTFS" --arg id "$id" --arg cg "/ocivol-bench-$id" \
        --argjson args "$args" --argjson ann "$ann" --argjson mounts "$mounts" --argjson hooks "$hooks" \
        '.root.path = $root | .hostname = "bench" | .process.args = $args | .annotations = $ann
         | .mounts += $mounts | .linux.cgroupsPath = $cg
         | if $hooks == null then . else .hooks = $hooks end' \
        "$T/template.json" >"$b/config.json"
    printf '%s\n' "$b"
}

# binds_json SRC:DST...: the JSON of plain bind mounts, as a config.json written by hand has them.
binds_json() {
    local p out="[]"
    for p in "$@"; do
        out=$(jq --arg s "${p%%:*}" --arg d "${p#*:}" \
            '. + [{destination: $d, type: "bind", source: $s, options: ["bind"]}]' <<<"$out")
    done
    printf '%s\n' "$out"
}

# The hooks of a bundle that calls `ocivol hook` (through PREFIX..., e.g. /usr/bin/time) with our
# state: hooks_json [PREFIX-JSON-ARRAY-FOR-CREATE PREFIX-JSON-ARRAY-FOR-POSTSTOP]
hooks_json() {
    local pc=${1:-[]} pp=${2:-[]}
    jq -n --arg ocivol "$OCIVOL" --argjson pc "$pc" --argjson pp "$pp" \
        --arg c "OCIVOL_CONFIG=$CONFIG" --arg r "OCIVOL_ROOT=$ST_ROOT" --arg rr "OCIVOL_RUN_ROOT=$ST_RUN" '
        def hook($prefix; $stage):
            if ($prefix | length) == 0
            then {path: $ocivol, args: ["ocivol", "hook", $stage], env: [$c, $r, $rr]}
            else {path: $prefix[0], args: ($prefix + [$ocivol, "hook", $stage]), env: [$c, $r, $rr]}
            end;
        {createRuntime: [hook($pc; "create-runtime")], poststop: [hook($pp; "poststop")]}'
}

# Starts a long-running container through the wrapper (it holds its volumes until deleted).
start_holder() {
    local id=$1 bundle=$2
    ocivol_rt run --detach --bundle "$bundle" "$id" </dev/null >"$T/$id.out" 2>&1 ||
        fail "start $id: $(cat "$T/$id.out")"
}
stop_holder() {
    ocivol_rt delete --force "$1" >/dev/null 2>&1 || fail "delete $1"
}

# The directory of volume $2 under state root $1 ($ST_ROOT or $ST_RUN): names belong to a
# scope, so the volume `io` of the benchmark's runc root is stored as io@HASH.
voldir() {
    local d
    for d in "$1/volumes/$2" "$1/volumes/$2"@*; do
        [ -e "$d" ] && { printf '%s\n' "$d"; return; }
    done
    printf '%s\n' "$1/volumes/$2"
}
users_of() {
    local d
    d=$(voldir "$ST_RUN" "$1")/users
    if [ -d "$d" ]; then find "$d" -mindepth 1 -maxdepth 1 | wc -l; else echo 0; fi
}
overlays_of() {
    local n
    n=$(grep -c " $(voldir "$ST_RUN" "$1")/merged " /proc/self/mountinfo || true)
    echo "${n:-0}"
}
merged_of() { printf '%s\n' "$(voldir "$ST_RUN" "$1")/merged"; }

now_ns() { date +%s%N; }

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

# interleaved NAME [-n LABEL]... [--prepare CMD] -- CMD...: the commands timed side by side by
# bench/pair.c, RUNS rounds after two of warm-up, each round running every command once (the
# first one rotating), so that slow drift of the machine hits all of them alike; each run is
# timed to the command's exit, and whatever it left running ends before the next run starts
# (see bench/pair.c). Samples in $OUT/raw/NAME.json as [{command, times: [s...], settled}...].
interleaved() {
    local name=$1 labels=() prepare=() cmds=() args=() i
    shift
    while [ "$1" != "--" ]; do
        case $1 in
        -n) labels+=("$2") ;;
        --prepare) prepare=(-p "$2") ;;
        *) fail "interleaved $name: unknown option $1" ;;
        esac
        shift 2
    done
    shift
    cmds=("$@")
    [ ${#labels[@]} = ${#cmds[@]} ] || fail "interleaved $name: one -n LABEL per command"
    for i in "${!cmds[@]}"; do
        args+=(-c "${labels[$i]}" "${cmds[$i]}")
    done
    build_pair
    "$PAIR" -n "$RUNS" -w 2 "${prepare[@]}" -o "$OUT/raw/$name.json" "${args[@]}" ||
        fail "time $name (bench/pair.c)"
    say "$name: $(jq -r 'def med: sort | if length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
        map("\(.command) \(.times | med * 100000 | round / 100) ms") | join(", ")' "$OUT/raw/$name.json")"
}

# bench/pair.c, built once.
build_pair() {
    [ -n "${PAIR:-}" ] && return 0
    PAIR=$T/pair-bin
    gcc -O2 -o "$PAIR" "$REPO/bench/pair.c" 2>"$T/pair.err" || fail "build bench/pair.c: $(cat "$T/pair.err")"
}

# median_ms FILE INDEX: the median, in ms, of the pooled samples of command INDEX.
median_ms() {
    jq -r --argjson i "$2" '.[$i].times | sort | (if length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end) * 1000' "$1"
}

# median of numbers on stdin
median() {
    sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR: floating point arithmetic, two decimals.
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
# cmp EXPR: "yes" or "no".
holds() { awk "BEGIN { print (($1) ? \"yes\" : \"no\") }"; }

# row ROW CASE BASELINE BASE-VALUE SUBJECT SUBJECT-VALUE UNIT RATIO ADDED TARGET MET [NOTE]:
# one line of the result table, appended to $OUT/rows.jsonl. MET is yes, no or "-" (no target).
row() {
    jq -nc --arg row "$1" --arg case "$2" --arg baseline "$3" --arg base "$4" --arg subject "$5" \
        --arg subj "$6" --arg unit "$7" --arg ratio "$8" --arg added "$9" --arg target "${10}" \
        --arg met "${11}" --arg note "${12:-}" \
        '{row: ($row | tonumber), case: $case, baseline: $baseline, baseline_value: ($base | tonumber? // $base),
          subject: $subject, subject_value: ($subj | tonumber? // $subj), unit: $unit,
          ratio: ($ratio | tonumber? // $ratio), added: ($added | tonumber? // $added), target: $target,
          met: $met, note: $note}' >>"$OUT/rows.jsonl"
    say "row $1 | $2 | $3 $4 $7 | $5 $6 $7 | ratio $8 | added $9 | target ${10}: ${11} ${12:-}"
}
