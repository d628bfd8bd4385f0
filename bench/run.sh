#!/usr/bin/env bash
# bench/run.sh: every benchmark of docs/PERFORMANCE.md, run as root with the release build.
#
#   make bench          # full sizes (about 5-10 minutes on 2 cores)
#   make bench-smoke    # BENCH_QUICK=1: tiny sizes, a few seconds per benchmark, same rows
#   bench/run.sh [ROW...]   # only some rows (1-8); the table then has only those
#
# Writes $OUT (target/bench/): results.json (machine, settings, rows), results.md (the table), and
# raw/ (each case's samples, and the library benchmark's JSON). Every figure is a median, next to
# a baseline measured in the same run, interleaved with it run by run (bench/pair.c). Sizes and
# repeat counts come from BENCH_* variables (see bench/lib.sh). Needs runc, busybox-static, gcc,
# jq, GNU time, and podman for row 6 (skipped without it).

set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || fail "bench/run.sh must run as root (it mounts overlays and runs runc)"
[ -x "$OCIVOL" ] || fail "no ocivol binary at $OCIVOL (cargo build --release)"
for tool in "$RUNC" "$BUSYBOX" "$TIME_BIN"; do
    [ -x "$tool" ] || fail "$tool not found (make bench installs it)"
done
for tool in gcc jq; do
    command -v "$tool" >/dev/null || fail "$tool not found (make bench installs it)"
done

ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(1 2 3 4 5 6 7 8)
want() {
    local r
    for r in "${ROWS[@]}"; do [ "$r" = "$1" ] && return 0; done
    return 1
}

MOUNTS_BEFORE=$(grep -c ocivol /proc/self/mountinfo || true)
RUNC_LIST_BEFORE=$("$RUNC" list -q 2>/dev/null | sort | tr '\n' ' ')
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

rm -rf "$OUT"
mkdir -p "$OUT/raw"
: >"$OUT/rows.jsonl"
mkdir -p "$BASES/small" "$HOSTBIND" "$ST_ROOT" "$ST_RUN"
write_config_toml
make_rootfs
make_template
# A small base: a few files, as most copy-on-write volumes over a dataset start.
for i in 1 2 3; do printf 'file %d\n' "$i" >"$BASES/small/f$i"; done
BASE=$BASES/small

# The volumes of the "10 mixed" cases: 3 copy-on-write (1 volatile), 4 named, 2 anonymous,
# 1 bind of a host path. Volume names get a prefix per case so that cases do not share them.
mixed_volumes() {
    local p=$1
    printf '%s' "${p}c1:/v1:base=$BASE;${p}c2:/v2:base=$BASE;${p}c3:/v3:base=$BASE,volatile;"
    printf '%s' "${p}n1:/v4;${p}n2:/v5;${p}n3:/v6:ro;${p}n4:/v7;/v8;/v9;$HOSTBIND:/v10"
}
# The floor of the same: 10 binds written by hand.
mixed_binds() {
    local i a=()
    for i in $(seq 1 10); do
        mkdir -p "$T/floor/d$i"
        a+=("$T/floor/d$i:/v$i")
    done
    binds_json "${a[@]}"
}
ann_volumes() { jq -nc --arg v "$1" '{"io.ocivol.volumes": $v}'; }
TRUE='["true"]'
SLEEP='["sleep", "3600"]'

# ---------------------------------------------------------------------------------------------
# Rows 1 and 2 (CLI): container start cost, runc vs ocivol
# ---------------------------------------------------------------------------------------------
# `runc run` of busybox `true` in the foreground (create, start, wait, delete) with N binds in
# config.json, against the same through `ocivol runtime run` with N volumes, and through the
# createRuntime/poststop hooks under plain runc.

# start_row CASE NAME BASE-INDEX SUBJECT-INDEX MAX-RATIO SUBJECT-TEXT [BASELINE-TEXT]: a row
# of row 1 from the samples NAME, ocivol (SUBJECT-INDEX) against a baseline (BASE-INDEX)
# of the same invocations; MAX-RATIO empty: no target.
start_row() {
    local f=$OUT/raw/$2.json base subj ratio added met target
    base=$(median_ms "$f" "$3")
    subj=$(median_ms "$f" "$4")
    ratio=$(calc "$subj / $base")
    added=$(calc "$subj - $base")
    if [ -n "$5" ]; then
        met=$(holds "$ratio <= $5")
        target="<= $5"
    else
        met=- target="none (reported)"
    fi
    row 1 "$1" "${7:-runc run, binds by hand}" "$(calc "$base")" "$6" "$(calc "$subj")" ms "$ratio" \
        "$added" "$target" "$met"
}

# The floor of a copy-on-write volume's start (bench/floor.c): the same overlay mounted with
# mount(2) before runc and unmounted after it, by one process between the timer and runc.
build_floor() {
    FLOOR=$T/floor-bin
    gcc -O2 -static -o "$FLOOR" "$REPO/bench/floor.c" 2>"$T/floor.err" ||
        gcc -O2 -o "$FLOOR" "$REPO/bench/floor.c" 2>>"$T/floor.err" ||
        fail "build bench/floor.c: $(cat "$T/floor.err")"
}

# The floor of a process between the engine and runc, and of a hook (bench/hop.c): static, and
# without a libc where it can be built so (x86_64).
build_hop() {
    [ -n "${HOP:-}" ] && return 0
    HOP=$T/hop-bin
    gcc -O2 -static -nostdlib -ffreestanding -fno-stack-protector -DHOP_NOLIBC -o "$HOP" \
        "$REPO/bench/hop.c" 2>"$T/hop.err" ||
        gcc -O2 -static -o "$HOP" "$REPO/bench/hop.c" 2>>"$T/hop.err" ||
        fail "build bench/hop.c: $(cat "$T/hop.err")"
}

bench_start() {
    section "1. start cost: runc run of true, runc vs ocivol"
    local floor1 floor10 b fl=$T/floor-ov
    build_floor
    build_hop
    mkdir -p "$fl/upper" "$fl/work" "$fl/merged"
    floor1=$(make_bundle floor1 "bf1-$TAG" "$TRUE" '{}' "$(binds_json "$BASE:/data")")
    floor10=$(make_bundle floor10 "bf10-$TAG" "$TRUE" '{}' "$(mixed_binds)")
    local floorov
    floorov=$(make_bundle floor-ov "bfo-$TAG" "$TRUE" '{}' "$(binds_json "$fl/merged:/data")")

    # 1 copy-on-write volume: first user each run (mounts and unmounts the overlay), and a later
    # user (another container holds the volume, so the overlay stays mounted: bind only).
    local cow_first cow_later holder
    cow_first=$(make_bundle cow-first "bc1-$TAG" "$TRUE" "$(ann_volumes "cowfirst:/data:base=$BASE")")
    cow_later=$(make_bundle cow-later "bc2-$TAG" "$TRUE" "$(ann_volumes "cowheld:/data:base=$BASE")")
    holder=$(make_bundle cow-holder "bch-$TAG" "$SLEEP" "$(ann_volumes "cowheld:/data:base=$BASE")")
    start_holder "bch-$TAG" "$holder"
    interleaved start-cow1 -n "runc, 1 bind" -n "runc, the overlay by hand (floor)" \
        -n "ocivol, 1 cow volume, first user" -n "ocivol, 1 cow volume, later user" -- \
        "$RUNC_RT run --bundle $floor1 bf1-$TAG" \
        "$FLOOR $BASE:$fl/upper:$fl/work:$fl/merged -- $RUNC_RT run --bundle $floorov bfo-$TAG" \
        "$OCIVOL_RT run --bundle $cow_first bc1-$TAG" \
        "$OCIVOL_RT run --bundle $cow_later bc2-$TAG"
    stop_holder "bch-$TAG"
    start_row "1 copy-on-write volume, first user (mounts + unmounts)" start-cow1 0 2 1.06 \
        "ocivol runtime run"
    start_row "1 copy-on-write volume, first user, against the floor" start-cow1 1 2 1.02 \
        "ocivol runtime run" "runc run, the same overlay mounted and unmounted around it"
    start_row "1 copy-on-write volume, later user (bind only)" start-cow1 0 3 1.04 "ocivol runtime run"

    # The same first user with overlay_linger: one container after another on the volume, each
    # the only user while it runs; the overlay stays mounted between them.
    b=$(make_bundle cow-linger "bcl-$TAG" "$TRUE" "$(ann_volumes "cowlinger:/data:base=$BASE")")
    interleaved start-cow1-linger -n "runc, 1 bind" \
        -n "ocivol, 1 cow volume, one container after another, overlay_linger $LINGER" -- \
        "$RUNC_RT run --bundle $floor1 bf1-$TAG" \
        "$OCIVOL_RT_LINGER run --bundle $b bcl-$TAG"
    start_row "1 copy-on-write volume, one container after another, overlay_linger $LINGER" \
        start-cow1-linger 0 1 1.06 "ocivol runtime run"

    # 10 mixed volumes, and their floor: the three overlays (the third volatile, as ocivol
    # mounts it) mounted and unmounted by hand around runc, the other seven bound as they are.
    local k ovs=() floor10ov
    for k in 1 2 3; do
        mkdir -p "$T/floor10/$k/upper" "$T/floor10/$k/work" "$T/floor10/$k/merged"
        ovs+=("$BASE:$T/floor10/$k/upper:$T/floor10/$k/work:$T/floor10/$k/merged")
    done
    ovs[2]+=":volatile"
    floor10ov=$(make_bundle floor10-ov "bf10o-$TAG" "$TRUE" '{}' "$(jq -s 'add' \
        <(binds_json "$T/floor10/1/merged:/v1" "$T/floor10/2/merged:/v2" "$T/floor10/3/merged:/v3") \
        <(mixed_binds | jq '.[3:]'))")
    b=$(make_bundle mixed "bm-$TAG" "$TRUE" "$(ann_volumes "$(mixed_volumes m)")")
    interleaved start-mixed10 -n "runc, 10 binds" -n "ocivol, 10 mixed volumes" \
        -n "runc, the 3 overlays by hand and 7 binds (floor)" -- \
        "$RUNC_RT run --bundle $floor10 bf10-$TAG" \
        "$OCIVOL_RT run --bundle $b bm-$TAG" \
        "$FLOOR ${ovs[*]} -- $RUNC_RT run --bundle $floor10ov bf10o-$TAG"
    start_row "10 mixed volumes (3 cow, 4 named, 2 anonymous, 1 host bind)" start-mixed10 0 1 1.15 \
        "ocivol runtime run"
    start_row "10 mixed volumes, against the floor" start-mixed10 2 1 "" "ocivol runtime run" \
        "runc run, the 3 overlays mounted and unmounted around it, 7 binds"

    # volumes-from a running source that has 10 volumes: the overlays are mounted by the source,
    # the new container joins each volume.
    local src
    src=$(make_bundle vf-source "bvs-$TAG" "$SLEEP" "$(ann_volumes "$(mixed_volumes s)")")
    start_holder "bvs-$TAG" "$src"
    b=$(make_bundle vf-reader "bvr-$TAG" "$TRUE" "$(jq -nc --arg s "bvs-$TAG" '{"io.ocivol.volumes-from": $s}')")
    interleaved start-vfrom -n "runc, 10 binds" -n "ocivol, volumes-from a source with 10 volumes" -- \
        "$RUNC_RT run --bundle $floor10 bf10-$TAG" \
        "$OCIVOL_RT run --bundle $b bvr-$TAG"
    stop_holder "bvs-$TAG"
    start_row "volumes-from a running source with 10 volumes" start-vfrom 0 1 1.10 "ocivol runtime run"

    # The createRuntime/poststop hooks under plain runc, 1 copy-on-write volume (first user).
    # The floor of hook mode: the same two hooks running a program that does nothing.
    local noop_hooks
    noop_hooks=$(make_bundle hook-noop "bhn-$TAG" "$TRUE" '{}' "$(binds_json "$BASE:/data")" \
        "$(jq -nc --arg p "$HOP" '{createRuntime: [{path: $p}], poststop: [{path: $p}]}')")
    b=$(make_bundle hook "bh-$TAG" "$TRUE" "$(ann_volumes "hookcow:/data:base=$BASE")" '[]' "$(hooks_json)")
    interleaved start-hooks -n "runc, 1 bind" -n "runc + ocivol hooks, 1 cow volume" \
        -n "runc, 1 bind, two hooks that do nothing" -- \
        "$RUNC_RT run --bundle $floor1 bf1-$TAG" \
        "$RUNC_RT run --bundle $b bh-$TAG" \
        "$RUNC_RT run --bundle $noop_hooks bhn-$TAG"
    start_row "hooks: 1 copy-on-write volume (first user)" start-hooks 0 1 1.10 \
        "runc + createRuntime/poststop hooks"
    start_row "hooks: two hooks that do nothing (the floor of hook mode)" start-hooks 0 2 "" \
        "runc + two no-op static hooks (bench/hop.c)"
    start_row "hooks: 1 copy-on-write volume, against two hooks that do nothing" start-hooks 2 1 "" \
        "runc + createRuntime/poststop hooks" "runc + two no-op static hooks (bench/hop.c)"
    b=$(make_bundle hook-linger "bhl-$TAG" "$TRUE" "$(ann_volumes "hooklinger:/data:base=$BASE")" '[]' \
        "$(CONFIG=$CONFIG_LINGER hooks_json)")
    interleaved start-hooks-linger -n "runc, 1 bind" \
        -n "runc + ocivol hooks, 1 cow volume, overlay_linger $LINGER" -- \
        "$RUNC_RT run --bundle $floor1 bf1-$TAG" \
        "$RUNC_RT run --bundle $b bhl-$TAG"
    start_row "hooks: 1 copy-on-write volume, one container after another, overlay_linger $LINGER" \
        start-hooks-linger 0 1 1.10 "runc + createRuntime/poststop hooks"
    # What lingers is unmounted by the operator's reset (it is no user's).
    local v
    for v in cowlinger hooklinger; do
        ocivol_cmd volume reset "$v" >/dev/null || fail "reset $v"
    done

    for v in cowfirst cowheld mc1 sc1 hookcow; do
        [ "$(users_of "$v")" = 0 ] && [ "$(overlays_of "$v")" = 0 ] ||
            fail "volume $v still has users or an overlay after row 1"
    done
}

# ---------------------------------------------------------------------------------------------
# Row 8: commands the wrapper passes through (no volume involved)
# ---------------------------------------------------------------------------------------------
# `state`, `kill` and `start` of a plain container (no ocivol annotation) through `ocivol
# runtime` against runc itself. `start` needs a created container each time: the
# --prepare (not timed) deletes the last one and creates the next with plain runc.

bench_passthrough() {
    section "8. commands passed through: state, kill, start"
    local b id=bp-$TAG sid=bps-$TAG
    b=$(make_bundle pass "$id" "$SLEEP" '{}')
    "$RUNC" --root "$RUNC_ROOT" run --detach --bundle "$b" "$id" </dev/null >/dev/null 2>&1 ||
        fail "start the container of row 8"
    build_hop
    interleaved pass-state -n "runc state" -n "ocivol runtime state" \
        -n "runc state through a process that does nothing" -- \
        "$RUNC_RT state $id" "$OCIVOL_RT state $id" "$HOP $RUNC_RT state $id"
    interleaved pass-kill -n "runc kill" -n "ocivol runtime kill" -- \
        "$RUNC_RT kill $id WINCH" "$OCIVOL_RT kill $id WINCH"
    "$RUNC" --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
    local s
    s=$(make_bundle pass-start "$sid" "$TRUE" '{}')
    interleaved pass-start -n "runc start" -n "ocivol runtime start" \
        --prepare "sh -c '$RUNC_RT delete --force $sid >/dev/null 2>&1; $RUNC_RT create --bundle $s $sid </dev/null >/dev/null 2>&1'" -- \
        "$RUNC_RT start $sid" "$OCIVOL_RT start $sid"
    "$RUNC" --root "$RUNC_ROOT" delete --force "$sid" >/dev/null 2>&1 || true
    local c base subj ratio
    for c in state kill start; do
        base=$(median_ms "$OUT/raw/pass-$c.json" 0)
        subj=$(median_ms "$OUT/raw/pass-$c.json" 1)
        ratio=$(calc "$subj / $base")
        row 8 "runtime $c, passed through" "runc $c" "$(calc "$base")" "ocivol runtime $c" \
            "$(calc "$subj")" ms "$ratio" "$(calc "$subj - $base")" "<= 1.03" "$(holds "$ratio <= 1.03")"
    done
    # The floor of any wrapper: runc exec'd by a static program that does nothing else.
    local f=$OUT/raw/pass-state.json hop
    base=$(median_ms "$f" 0)
    hop=$(median_ms "$f" 2)
    subj=$(median_ms "$f" 1)
    row 8 "runtime state through a process that does nothing (the floor of a wrapper)" "runc state" \
        "$(calc "$base")" "bench/hop.c, then runc state" "$(calc "$hop")" ms "$(calc "$hop / $base")" \
        "$(calc "$hop - $base")" "none (reported)" -
    row 8 "runtime state, passed through, against the floor of a wrapper" \
        "bench/hop.c, then runc state" "$(calc "$hop")" "ocivol runtime state" "$(calc "$subj")" ms \
        "$(calc "$subj / $hop")" "$(calc "$subj - $hop")" "none (reported)" -
}

# ---------------------------------------------------------------------------------------------
# Rows 2 and 3 (library): first vs later user, scale with users and records
# ---------------------------------------------------------------------------------------------

bench_store() {
    section "2, 3. the store alone: first vs later user, users and records"
    local quick=() f=$OUT/raw/store_scale.json
    [ "$QUICK" = 1 ] && quick=(--quick)
    local target=()
    [ -n "${BENCH_CARGO_TARGET_DIR:-}" ] && target=(--target-dir "$BENCH_CARGO_TARGET_DIR")
    (cd "$REPO" && cargo bench -q "${target[@]}" --bench store_scale -- --dir "$T/store-bench" --run-dir "$RUNFS/store-bench" --base "$BASE" \
        --out "$f" "${quick[@]}" >/dev/null) || fail "store_scale"
    rm -rf "$T/store-bench" "$RUNFS/store-bench"
    if want 2; then
        local fl=.first_vs_later
        row 2 "first user (mounts the overlay) vs later user, store acquire" "later user" \
            "$(jq "$fl.later_acquire_us" "$f")" "first user" "$(jq "$fl.first_acquire_us" "$f")" us \
            "$(jq "$fl.first_over_later" "$f")" \
            "$(calc "$(jq "$fl.first_acquire_us - $fl.later_acquire_us" "$f")")" "none (reported)" -
        row 2 "last release (unmounts) vs a release that is not the last, store release" \
            "not last" "$(jq "$fl.release_not_last_us" "$f")" "last" "$(jq "$fl.last_release_us" "$f")" us \
            "$(jq "$fl.last_over_not_last" "$f")" \
            "$(calc "$(jq "$fl.last_release_us - $fl.release_not_last_us" "$f")")" "none (reported)" -
    fi
    if want 3; then
        local recs n first last_users last ratio
        recs=$(jq .scale.records "$f")
        first=$(jq '.scale.cases[0].median_us' "$f")
        for n in $(jq '.scale.cases[1:][].users' "$f"); do
            last=$(jq --argjson n "$n" '.scale.cases[] | select(.users == $n) | .median_us' "$f")
            ratio=$(calc "$last / $first")
            row 3 "acquire + release, $n vs 1 current users, $recs container records" "1 user" "$first" \
                "$n users" "$last" us "$ratio" "$(calc "$last - $first")" "<= 1.20" \
                "$(holds "$ratio <= 1.20")"
        done
        first=$(jq '.volumes_from.cases[0].median_us' "$f")
        last=$(jq '.volumes_from.cases[1].median_us' "$f")
        last_users=$(jq '.volumes_from.cases[1].records' "$f")
        ratio=$(calc "$last / $first")
        row 3 "prepare + release with volumes-from, $last_users vs 10 container records" "10 records" \
            "$first" "$last_users records" "$last" us "$ratio" "$(calc "$last - $first")" "<= 1.20" \
            "$(holds "$ratio <= 1.20")"
        # Issue 12: by Kubernetes container name, through the name index; the added time must
        # stay under 5 ms with 20,000 records.
        first=$(jq '.volumes_from_by_name.cases[0].median_us' "$f")
        last=$(jq '.volumes_from_by_name.cases[1].median_us' "$f")
        last_users=$(jq '.volumes_from_by_name.cases[1].records' "$f")
        ratio=$(calc "$last / $first")
        row 3 "prepare + release with volumes-from by container name, $last_users vs 10 container records" \
            "10 records" "$first" "$last_users records" "$last" us "$ratio" "$(calc "$last - $first")" \
            "added < 5000 us" "$(holds "$last - $first < 5000")"
    fi
}

# ---------------------------------------------------------------------------------------------
# Row 4: concurrency
# ---------------------------------------------------------------------------------------------
# PARALLEL containers created at once on one copy-on-write volume (`create`: the runc init waits),
# then deleted at once, through ocivol; the same with plain runc and the same bind. Rounds
# alternate runc and ocivol.

bench_concurrency() {
    section "4. concurrency: $BENCH_PARALLEL containers in parallel"
    local P=$BENCH_PARALLEL i kind r t0 t1 t2 fails
    local ann
    ann=$(ann_volumes "conc:/data:base=$BASE")
    for i in $(seq 1 "$P"); do
        make_bundle "conc-runc/$i" "bcr-$TAG-$i" "$SLEEP" '{}' "$(binds_json "$BASE:/data")" >/dev/null
        make_bundle "conc-ocivol/$i" "bco-$TAG-$i" "$SLEEP" "$ann" >/dev/null
    done
    : >"$T/conc-fails"
    for ((r = 1; r <= ROUNDS; r++)); do
        for kind in runc ocivol; do
            local cmd=$RUNC_RT prefix=bcr
            [ "$kind" = ocivol ] && cmd=$OCIVOL_RT prefix=bco
            # Each container's IDs are new per round (a cgroup of a deleted one may linger).
            t0=$(now_ns)
            seq 1 "$P" | xargs -P "$P" -I{} sh -c \
                "$cmd create --bundle $T/bundles/conc-$kind/{} $prefix-$TAG-{} </dev/null >/dev/null 2>&1 || echo create $kind {} >>$T/conc-fails"
            t1=$(now_ns)
            seq 1 "$P" | xargs -P "$P" -I{} sh -c \
                "$cmd delete --force $prefix-$TAG-{} </dev/null >/dev/null 2>&1 || echo delete $kind {} >>$T/conc-fails"
            t2=$(now_ns)
            echo "$(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000))" >>"$T/conc-$kind"
            say "round $r $kind: create $(((t1 - t0) / 1000000)) ms, delete $(((t2 - t1) / 1000000)) ms"
            [ -z "$(runc_list_t)" ] || fail "containers left after the $kind round: $(runc_list_t)"
        done
    done
    fails=$(wc -l <"$T/conc-fails")
    local users overlays cr co dr do_ ok
    users=$(users_of conc)
    overlays=$(overlays_of conc)
    cr=$(cut -d' ' -f1 "$T/conc-runc" | median)
    co=$(cut -d' ' -f1 "$T/conc-ocivol" | median)
    dr=$(cut -d' ' -f2 "$T/conc-runc" | median)
    do_=$(cut -d' ' -f2 "$T/conc-ocivol" | median)
    ok=$(holds "$fails == 0 && $users == 0 && $overlays == 0")
    local note="failures $fails, users left $users, overlays left $overlays"
    [ "$fails" = 0 ] || note+=": $(head -3 "$T/conc-fails" | tr '\n' ';')"
    local cratio
    cratio=$(calc "$co / $cr")
    [ "$ok" = yes ] && ok=$(holds "$cratio <= 1.15")
    row 4 "$P parallel creates on one cow volume (wall time)" "runc, same bind" "$cr" "ocivol" "$co" ms \
        "$cratio" "$(calc "$co - $cr")" "<= 1.15; 0 failures, 0 users, no overlay" "$ok" "$note"
    row 4 "$P parallel deletes (wall time)" "runc" "$dr" "ocivol" "$do_" ms \
        "$(calc "$do_ / $dr")" "$(calc "$do_ - $dr")" "0 failures, 0 users, no overlay" "$ok" "$note"
    rm -rf "$T/bundles/conc-runc" "$T/bundles/conc-ocivol"
}

# ---------------------------------------------------------------------------------------------
# Row 5: I/O through the overlay vs a plain bind of the base
# ---------------------------------------------------------------------------------------------

bench_io() {
    section "5. I/O: ${BENCH_IO_MIB} MiB file and ${BENCH_SMALL_FILES} small files"
    local io=$BASES/io i d
    mkdir -p "$io/tree" "$T/iobind" "$T/cp"
    dd if=/dev/urandom of="$io/big" bs=1M count="$BENCH_IO_MIB" status=none
    local chunk
    chunk=$(printf '%4096s' '')
    for ((i = 0; i < BENCH_SMALL_FILES; i++)); do
        d=$io/tree/d$((i / 100))
        [ -d "$d" ] || mkdir "$d"
        printf '%s' "$chunk" >"$d/f$i"
    done
    sync
    mount --bind "$io" "$T/iobind"
    local holder merged
    holder=$(make_bundle io-holder "bio-$TAG" "$SLEEP" "$(ann_volumes "io:/data:base=$io")")
    start_holder "bio-$TAG" "$holder"
    merged=$(merged_of io)
    # Warm page cache for both (the same pages: overlayfs reads the lower file's).
    interleaved io-big -n "plain bind of the base" -n "through the volume's overlay" -- \
        "dd if=$T/iobind/big of=/dev/null bs=1M" "dd if=$merged/big of=/dev/null bs=1M"
    interleaved io-tree -n "plain bind of the base" -n "through the volume's overlay" -- \
        "find $T/iobind/tree -type f -exec cat {} +" "find $merged/tree -type f -exec cat {} +"
    stop_holder "bio-$TAG"
    umount "$T/iobind"
    local f base subj tp
    for f in big tree; do
        base=$(median_ms "$OUT/raw/io-$f.json" 0)
        subj=$(median_ms "$OUT/raw/io-$f.json" 1)
        tp=$(calc "$base / $subj")
        local what="sequential read of a ${BENCH_IO_MIB} MiB file (warm cache)"
        [ "$f" = tree ] && what="read of ${BENCH_SMALL_FILES} files of 4 KiB (warm cache)"
        row 5 "$what; ratio = overlay throughput / bind throughput" "plain bind" "$(calc "$base")" \
            "overlay" "$(calc "$subj")" ms "$tp" "$(calc "$subj - $base")" ">= 0.95" "$(holds "$tp >= 0.95")"
    done

    # Copy-up: the first write into the big file copies all of it into the upper directory (and
    # syncs it: the volume is persistent). Baseline: copying the file with dd and fsync.
    local r t0 t1 t2 first=() later=() cp=()
    b=$(make_bundle cu-holder "bcu-$TAG" "$SLEEP" "$(ann_volumes "cu:/data:base=$io")")
    for ((r = 1; r <= BENCH_COPYUP_ROUNDS; r++)); do
        t0=$(now_ns)
        dd if="$io/big" of="$T/cp/big" bs=1M conv=fsync status=none
        t1=$(now_ns)
        cp+=($(((t1 - t0) / 1000)))
        rm -f "$T/cp/big"
        start_holder "bcu-$TAG" "$b"
        merged=$(merged_of cu)
        t0=$(now_ns)
        printf x | dd of="$merged/big" bs=1 count=1 conv=notrunc status=none
        t1=$(now_ns)
        printf y | dd of="$merged/big" bs=1 count=1 seek=1 conv=notrunc status=none
        t2=$(now_ns)
        first+=($(((t1 - t0) / 1000)))
        later+=($(((t2 - t1) / 1000)))
        stop_holder "bcu-$TAG"
        # The volume is unmounted: drop its copy so that the next round copies up again.
        rm -f "$(voldir "$ST_ROOT" cu)/upper/big"
    done
    local cpm fm lm
    cpm=$(printf '%s\n' "${cp[@]}" | median)
    fm=$(printf '%s\n' "${first[@]}" | median)
    lm=$(printf '%s\n' "${later[@]}" | median)
    row 5 "first write to the ${BENCH_IO_MIB} MiB file (copy-up) vs copying it with fsync" \
        "dd copy + fsync" "$(calc "$cpm / 1000")" "copy-up" "$(calc "$fm / 1000")" ms \
        "$(calc "$fm / $cpm")" "$(calc "($fm - $cpm) / 1000")" "none (reported)" - \
        "a later 1-byte write: $(calc "$lm / 1000") ms"
    rm -rf "$io" "$T/cp"
}

# ---------------------------------------------------------------------------------------------
# Row 6: podman's own overlay volumes vs podman with ocivol's hook
# ---------------------------------------------------------------------------------------------

PODMAN_DIR=$T/podman
podman_cmd() {
    podman --root "$PODMAN_DIR/storage" --runroot "$PODMAN_DIR/runroot" --tmpdir "$PODMAN_DIR/tmp" \
        --storage-driver vfs --cgroup-manager=cgroupfs --events-backend=file --runtime "$RUNC" \
        --hooks-dir "$PODMAN_DIR/hooks" "$@"
}

bench_podman() {
    section "6. podman -v BASE:/data:O vs podman with ocivol's hook"
    if ! command -v podman >/dev/null; then
        row 6 "podman run of true, 1 copy-on-write volume" "podman :O" - "podman + ocivol hook" - ms \
            - - "none (reported)" - "skipped: podman is not installed"
        return 0
    fi
    mkdir -p "$PODMAN_DIR/hooks" "$PODMAN_DIR/hooks-linger"
    local dir cfg
    for dir in hooks hooks-linger; do
        cfg=$CONFIG
        [ "$dir" = hooks-linger ] && cfg=$CONFIG_LINGER
        jq --arg p "$OCIVOL" --arg c "OCIVOL_CONFIG=$cfg" --arg r "OCIVOL_ROOT=$ST_ROOT" \
            --arg rr "OCIVOL_RUN_ROOT=$ST_RUN" '.hook.path = $p | .hook.env = [$c, $r, $rr]' \
            "$REPO/hooks.d/ocivol.json" >"$PODMAN_DIR/$dir/ocivol.json"
    done
    PODMAN_USED=1
    local P="podman --root $PODMAN_DIR/storage --runroot $PODMAN_DIR/runroot --tmpdir $PODMAN_DIR/tmp"
    P+=" --storage-driver vfs --cgroup-manager=cgroupfs --events-backend=file --runtime $RUNC"
    P+=" --hooks-dir $PODMAN_DIR/HOOKS run --rm --network=none --ulimit nofile=1024:1024"
    P+=" --ulimit nproc=1024:1024"
    local saved_runs=$RUNS
    RUNS=$BENCH_PODMAN_RUNS
    interleaved podman -n "podman -v BASE:/data:O" -n "podman + ocivol hook" \
        -n "podman + ocivol hook, overlay_linger $LINGER" -- \
        "${P/HOOKS/hooks} -v $BASE:/data:O --rootfs $ROOTFS true" \
        "${P/HOOKS/hooks} --annotation io.ocivol.volumes=pod:/data:base=$BASE --rootfs $ROOTFS true" \
        "${P/HOOKS/hooks-linger} --annotation io.ocivol.volumes=podl:/data:base=$BASE --rootfs $ROOTFS true"
    RUNS=$saved_runs
    [ "$(users_of pod)" = 0 ] && [ "$(overlays_of pod)" = 0 ] || fail "podman left a user or an overlay"
    local base subj
    base=$(median_ms "$OUT/raw/podman.json" 0)
    subj=$(median_ms "$OUT/raw/podman.json" 1)
    row 6 "podman run --rm of true, 1 copy-on-write volume over the same base" "podman :O" \
        "$(calc "$base")" "podman + ocivol hook" "$(calc "$subj")" ms "$(calc "$subj / $base")" \
        "$(calc "$subj - $base")" "<= 1.00" "$(holds "$subj / $base <= 1.00")"
    subj=$(median_ms "$OUT/raw/podman.json" 2)
    row 6 "podman run --rm of true, 1 copy-on-write volume, overlay_linger $LINGER" "podman :O" \
        "$(calc "$base")" "podman + ocivol hook" "$(calc "$subj")" ms "$(calc "$subj / $base")" \
        "$(calc "$subj - $base")" "<= 1.00" "$(holds "$subj / $base <= 1.00")"
    ocivol_cmd volume reset podl >/dev/null || fail "reset podl"
}

# ---------------------------------------------------------------------------------------------
# Row 7: peak RSS of the ocivol process
# ---------------------------------------------------------------------------------------------
# GNU time reports the largest RSS of the process and of the children it waited for, so in
# runtime mode ocivol calls /bin/true as its "real runtime" (runc is a Go program far larger than
# ocivol): the figure is then an upper bound of ocivol's own peak. The hooks run under plain runc
# with GNU time as the hook's program, so only `ocivol hook` is measured.

bench_rss() {
    section "7. peak RSS of ocivol"
    local cfg=$T/config-true.toml root=$T/rss/root run=$RUNFS/rss
    sed 's|^runtime = .*|runtime = "/bin/true"|' "$CONFIG" >"$cfg"
    mkdir -p "$root" "$run"
    # rss NAME CMD...: sets KIB to the command's peak RSS.
    rss() {
        "$TIME_BIN" -f %M -o "$T/rss-$1" "${@:2}" </dev/null >/dev/null 2>"$T/rss-$1.err" ||
            fail "rss $1: $(cat "$T/rss-$1.err")"
        KIB=$(tail -1 "$T/rss-$1")
    }
    local rt=("$OCIVOL" --config "$cfg" --root "$root" --run-root "$run" runtime --root "$RUNFS/rss-runc")
    local base b limit=$((8 * 1024))
    rss true /bin/true
    base=$KIB
    emit_rss() {
        row 7 "$1" "/bin/true" "$(calc "$base / 1024")" "ocivol" "$(calc "$2 / 1024")" MiB \
            "$(calc "$2 / $base")" "$(calc "($2 - $base) / 1024")" "< 8 MiB" "$(holds "$2 < $limit")" "${3:-}"
    }
    b=$(make_bundle rss-cow "rc-$TAG" "$TRUE" "$(ann_volumes "rsscow:/data:base=$BASE")")
    rss cow "${rt[@]}" run --bundle "$b" "rc-$TAG"
    emit_rss "runtime run, 1 copy-on-write volume" "$KIB"
    b=$(make_bundle rss-mixed "rm-$TAG" "$TRUE" "$(ann_volumes "$(mixed_volumes r)")")
    rss mixed "${rt[@]}" run --bundle "$b" "rm-$TAG"
    emit_rss "runtime run, 10 mixed volumes" "$KIB"
    b=$(make_bundle rss-src "rs-$TAG" "$SLEEP" "$(ann_volumes "$(mixed_volumes q)")")
    rss create "${rt[@]}" create --bundle "$b" "rs-$TAG"
    emit_rss "runtime create, 10 mixed volumes" "$KIB"
    b=$(make_bundle rss-vf "rv-$TAG" "$TRUE" "$(jq -nc --arg s "rs-$TAG" '{"io.ocivol.volumes-from": $s}')")
    rss vf "${rt[@]}" run --bundle "$b" "rv-$TAG"
    emit_rss "runtime run, volumes-from a source with 10 volumes" "$KIB"
    # The same with BENCH_RECORDS records of earlier containers in the state root.
    local i rec
    for ((i = 0; i < BENCH_RECORDS; i++)); do
        rec="{\"id\":\"old-$i\",\"bundle\":\"/run/old-$i\",\"scope\":{\"namespace\":\"root:default\"},"
        rec+="\"volumes\":[],\"mounts\":[{\"destination\":\"/data\",\"source\":\"/srv/x\",\"options\":[\"rw\"]}],\"boot_id\":\"\"}"
        printf '%s\n' "$rec" >"$root/containers/old-$i.0000000000000000.json"
    done
    rss vf2 "${rt[@]}" run --bundle "$b" "rv-$TAG"
    emit_rss "runtime run, volumes-from, $BENCH_RECORDS container records present" "$KIB"
    rm -f "$root"/containers/old-*.json
    rss delete "${rt[@]}" delete --force "rs-$TAG"
    emit_rss "runtime delete (releases 10 volumes)" "$KIB"
    rss state "${rt[@]}" state "rs-$TAG"
    emit_rss "runtime, a command passed through (state)" "$KIB"
    # Hooks, under real runc: GNU time is the hook's program.
    local hooks
    hooks=$(hooks_json "[\"$TIME_BIN\", \"-f\", \"%M\", \"-o\", \"$T/rss-hook-create\"]" \
        "[\"$TIME_BIN\", \"-f\", \"%M\", \"-o\", \"$T/rss-hook-poststop\"]")
    b=$(make_bundle rss-hook "rh-$TAG" "$TRUE" "$(ann_volumes "rsshook:/data:base=$BASE")" '[]' "$hooks")
    "$RUNC" --root "$RUNC_ROOT" run --bundle "$b" "rh-$TAG" </dev/null >/dev/null 2>&1 || fail "hook run"
    emit_rss "hook create-runtime, 1 copy-on-write volume" "$(tail -1 "$T/rss-hook-create")"
    emit_rss "hook poststop" "$(tail -1 "$T/rss-hook-poststop")"
    for v in rsscow rc1 qc1 rsshook; do
        local u=$ST_RUN
        [ "$v" = rsshook ] || ST_RUN=$run
        [ "$(users_of "$v")" = 0 ] && [ "$(overlays_of "$v")" = 0 ] || fail "volume $v still in use after row 7"
        ST_RUN=$u
    done
}

# ---------------------------------------------------------------------------------------------
# Run, then write results.json and results.md
# ---------------------------------------------------------------------------------------------

want 1 && bench_start
{ want 2 || want 3; } && bench_store
want 4 && bench_concurrency
want 5 && bench_io
want 6 && bench_podman
want 7 && bench_rss
want 8 && bench_passthrough

[ -z "$(runc_list_t)" ] || fail "containers left: $(runc_list_t)"
# Every mount under $T but the run roots' tmpfs (the cleanup unmounts it).
left_mounts() { mounts_under_t | grep -vxF "$RUNFS" || true; }
[ -z "$(left_mounts)" ] || fail "mounts left under $T: $(left_mounts | tr "\n" " ")"

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
jq -s --arg started "$STARTED" --arg finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg kernel "$(uname -r)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
    --arg cores "$(nproc)" --arg mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" --arg runc "$("$RUNC" --version | head -1)" \
    --arg podman "$(podman --version 2>/dev/null || echo none)" --arg timing "bench/pair.c, interleaved" \
    --arg fs "$(findmnt -no FSTYPE -T "$T")" --arg load "$LOAD" --arg quick "$QUICK" --arg workdir "$T" \
    --arg commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson settings "$(jq -n --arg runs "$RUNS" --arg rounds "$ROUNDS" --arg mib "$BENCH_IO_MIB" \
        --arg files "$BENCH_SMALL_FILES" --arg par "$BENCH_PARALLEL" --arg prun "$BENCH_PODMAN_RUNS" \
        --arg cu "$BENCH_COPYUP_ROUNDS" --arg rec "$BENCH_RECORDS" \
        '{runs: $runs, rounds: $rounds, io_mib: $mib, small_files: $files, parallel: $par,
          podman_runs: $prun, copyup_rounds: $cu, records: $rec} | map_values(tonumber)')" \
    '{machine: {os: $os, kernel: $kernel, cpu: $cpu, cores: ($cores | tonumber), memory: $mem,
               state_fs: $fs, runc: $runc, podman: $podman, timing: $timing,
               load_at_end: $load},
      commit: $commit, workdir: $workdir, started: $started, finished: $finished, quick: ($quick == "1"),
      settings: $settings, rows: .}' "$OUT/rows.jsonl" >"$OUT/results.json"

jq -r '
  def fmt: if type == "number" then (. * 100 | round / 100 | tostring) else tostring end;
  "| # | case | baseline (median) | ocivol (median) | ratio | added | target | met |",
  "| - | --- | --- | --- | --- | --- | --- | --- |",
  (.rows[] | "| \(.row) | \(.case)\(if .note != "" then " (" + .note + ")" else "" end) | \(.baseline): \(.baseline_value | fmt) \(.unit) | \(.subject): \(.subject_value | fmt) \(.unit) | \(.ratio | fmt) | \(.added | fmt) \(.unit) | \(.target) | \(.met) |")
' "$OUT/results.json" >"$OUT/results.md"

section "results ($OUT/results.md)"
cat "$OUT/results.md" >&2

MOUNTS_AFTER=$(grep -c ocivol /proc/self/mountinfo || true)
RUNC_LIST_AFTER=$("$RUNC" list -q 2>/dev/null | sort | tr '\n' ' ')
say "" "ocivol mounts on the host: $MOUNTS_BEFORE before, $MOUNTS_AFTER after (other users of this machine count too)"
say "runc list (default root): before [$RUNC_LIST_BEFORE], after [$RUNC_LIST_AFTER]"
