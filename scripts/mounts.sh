# Sourced by scripts/demo.sh and bench/lib.sh: the mount points under the caller's $T, read from
# /proc/self/mountinfo (octal escapes decoded), deepest first, for their cleanup.
mounts_under_t() {
    local _id _parent _dev _root mp _rest
    while read -r _id _parent _dev _root mp _rest; do
        mp=$(printf '%b' "${mp//\\/\\0}")
        case "$mp" in
        "$T" | "$T"/*) printf '%d %s\n' "$(tr -cd / <<<"$mp" | wc -c)" "$mp" ;;
        esac
    done </proc/self/mountinfo | sort -rn -k1,1 | cut -d' ' -f2-
}

# Lazily unmounts everything under $T, deepest first, a few passes (a mount can hide another).
unmount_all_under_t() {
    local pass mp
    for pass in 1 2 3 4 5; do
        mp=$(mounts_under_t)
        [ -z "$mp" ] && return 0
        while IFS= read -r mp; do
            [ -n "$mp" ] && umount -l "$mp" 2>/dev/null
        done <<<"$mp"
    done
}
