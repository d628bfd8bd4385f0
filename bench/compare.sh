#!/usr/bin/env bash
# bench/compare.sh OLD NEW: the start cases of row 1, run with two ocivol binaries side by side
# (bench/pair.c: the two binaries run by turns, one run each per round; separate state roots).
#
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && cargo build --release)
#   bench/compare.sh /tmp/old/target/x86_64-unknown-linux-musl/release/ocivol \
#       target/x86_64-unknown-linux-musl/release/ocivol
#
# Prints the median of each binary per case and NEW - OLD. With
# RUNTIME=/bin/true the real runtime is replaced by a no-op, which leaves ocivol's own work.
# BENCH_RUNS (default 150) runs per command.

set -euo pipefail
[ $# = 2 ] || { echo "usage: bench/compare.sh OLD-BINARY NEW-BINARY" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
BENCH_RUNS=${BENCH_RUNS:-150}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || fail "bench/compare.sh must run as root"
mkdir -p "$OUT/raw" "$BASES/small" "$HOSTBIND"
make_rootfs
make_template
RUNC=${RUNTIME:-$RUNC} write_config_toml
for i in 1 2 3; do printf 'file %d\n' "$i" >"$BASES/small/f$i"; done
BASE=$BASES/small
mixed_volumes() {
    local p=$1
    printf '%s' "${p}c1:/v1:base=$BASE;${p}c2:/v2:base=$BASE;${p}c3:/v3:base=$BASE,volatile;"
    printf '%s' "${p}n1:/v4;${p}n2:/v5;${p}n3:/v6:ro;${p}n4:/v7;/v8;/v9;$HOSTBIND:/v10"
}
ann() { jq -nc --arg k "$1" --arg v "$2" '{($k): $v}'; }
# A binary of before config.toml (issue 15) reads the same settings as JSON.
jq -n --arg runtime "${RUNTIME:-$RUNC}" --arg bases "$BASES" --arg hb "$HOSTBIND" \
    '{runtime: $runtime, policy: {allowed_bases: [$bases], allowed_bind_sources: [$hb]}}' >"$T/config.json"
config_for() {
    if "$1" config --help >/dev/null 2>&1; then printf '%s' "$CONFIG"; else printf '%s' "$T/config.json"; fi
}
rt() { printf '%s' "$1 --config $(config_for "$1") --root $T/st-$2/root --run-root $RUNFS/st-$2 runtime --root $RUNC_ROOT"; }
declare -A RT=([old]=$(rt "$OLD" old) [new]=$(rt "$NEW" new))

cow=$(make_bundle cow "bc-$TAG" '["true"]' "$(ann io.ocivol.volumes "cow:/data:base=$BASE")")
mixed=$(make_bundle mixed "bm-$TAG" '["true"]' "$(ann io.ocivol.volumes "$(mixed_volumes m)")")
cp "$cow/config.json" "$cow/orig.json"
cp "$mixed/config.json" "$mixed/orig.json"
declare -A VF
if [ -z "${RUNTIME:-}" ]; then
    for v in old new; do
        src=$(make_bundle "src-$v" "bs$v-$TAG" '["sleep", "3600"]' "$(ann io.ocivol.volumes "$(mixed_volumes s)")")
        ${RT[$v]} run --detach --bundle "$src" "bs$v-$TAG" </dev/null >"$T/src-$v.out" 2>&1 ||
            fail "start the volumes-from source: $(cat "$T/src-$v.out")"
        VF[$v]=$(make_bundle "vf-$v" "bv$v-$TAG" '["true"]' "$(ann io.ocivol.volumes-from "bs$v-$TAG")")
    done
fi

# case NAME BUNDLE-OLD BUNDLE-NEW ID
case_() {
    local name=$1 bo=$2 bn=$3 id=$4 prep=()
    # Without a real runtime nothing deletes the container: restore the specs the wrapper changed.
    [ -n "${RUNTIME:-}" ] && prep=(--prepare "cp $bo/orig.json $bo/config.json; cp $bn/orig.json $bn/config.json")
    interleaved "compare-$name" -n old -n new "${prep[@]}" -- \
        "${RT[old]} run --bundle $bo $id" "${RT[new]} run --bundle $bn $id"
    jq -r --arg case "$name" '
        def med: sort | if length % 2 == 1 then .[length / 2 | floor]
                        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
        map({key: .command, value: (.times | med * 1000)}) | from_entries
        | "\($case): old \(.old * 100 | round / 100) ms, new \(.new * 100 | round / 100) ms, new - old \((.new - .old) * 100 | round / 100) ms"' \
        "$OUT/raw/compare-$name.json"
}
case_ "1 copy-on-write volume, first user" "$cow" "$cow" "bc-$TAG"
case_ "10 mixed volumes" "$mixed" "$mixed" "bm-$TAG"
if [ -z "${RUNTIME:-}" ]; then
    case_ "volumes-from a source with 10 volumes" "${VF[old]}" "${VF[new]}" "bvf-$TAG"
    for v in old new; do ${RT[$v]} delete --force "bs$v-$TAG" >/dev/null 2>&1 || true; done
fi
