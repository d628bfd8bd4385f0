#!/bin/bash
# runc's own integration suite (bats, from Debian's runc source package, the runc that Debian 12
# ships) with the suite's runc replaced by `ocivol runtime`: see `make runc-suite`.
#
# usage: scripts/runc-suite.sh OCIVOL [MODE]
#   MODE plain    the suite's specs as they are: no ocivol key, so ocivol must hand every
#                 command to runc untouched (the default)
#   MODE volumes  every create/run gets an `io.ocivol.volumes` annotation first (an anonymous
#                 volume on /ocivol-anon), so ocivol parses each spec, prepares a volume and
#                 rewrites config.json before runc sees it
#   MODE runc     plain runc, the baseline: a test that fails here fails on this machine
#                 whatever the runtime
# RUNC_SUITE_TESTS: the .bats files to run (default: the ones that need neither systemd,
# criu, a Debian image, cgroup v2 nor network helpers).
#
# Everything lives under target/runc-suite: the source, the tools the suite builds (recvtty), a
# busybox image made from busybox-static, and ocivol's config and state roots. The host's
# apt configuration is not changed: the source package comes through a private sources list.
set -euo pipefail

OCIVOL=$(readlink -f "$1")
MODE=${2:-plain}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$HERE/target/runc-suite
VERSION=1.1.5
SRC=$WORK/runc-$VERSION
mkdir -p "$WORK"

# 1. The source package, through a private sources list (deb-src is off on a fresh machine).
if [ ! -d "$SRC/tests/integration" ]; then
	APT="$WORK/apt"
	mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/dl"
	# This machine's own Debian mirror, read from its apt sources.
	mirror=$({
		grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
		grep -hs '^deb ' /etc/apt/sources.list | grep -o '[a-z]*://[^ ]*'
	} | grep -v security | head -1) || true
	[ -n "$mirror" ] || { echo "runc-suite: no Debian mirror in the apt sources" >&2; exit 1; }
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
		>"$APT/sources.list"
	opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache")
	apt-get "${opts[@]}" update
	(cd "$WORK/dl" && apt-get "${opts[@]}" source --download-only runc)
	tar -C "$WORK" -xf "$WORK"/dl/runc_"$VERSION"*.orig.tar.xz
fi

# 2. recvtty, which the suite starts for every bundle, built from that source with Debian's Go
#    packages (GOPATH mode: nothing is fetched).
#    The suite starts it in the background with bats' fd 3 open, and a test whose teardown runs
#    before it wrote its pid file leaves it running: bats then waits for fd 3 forever. The
#    suite's recvtty is a wrapper that closes fd 3 first.
RECVTTY=$SRC/contrib/cmd/recvtty/recvtty.bin
if [ ! -x "$RECVTTY" ]; then
	GP=$WORK/gopath
	mkdir -p "$GP/src/github.com/opencontainers"
	ln -sfn "$SRC" "$GP/src/github.com/opencontainers/runc"
	(cd "$GP/src/github.com/opencontainers/runc" &&
		GO111MODULE=off GOPATH="$GP:/usr/share/gocode" GOCACHE="$WORK/gocache" \
			go build -o "$RECVTTY" ./contrib/cmd/recvtty)
	printf '#!/bin/sh\nexec 3>&-\nexec %s "$@"\n' "$RECVTTY" >"$SRC/contrib/cmd/recvtty/recvtty"
	chmod +x "$SRC/contrib/cmd/recvtty/recvtty"
fi

# 3. The images the suite would download: busybox made from busybox-static; no Debian image
#    (the tests that use one are not in the default list).
TESTDATA=$SRC/tests/integration/testdata
arch=$(go env GOARCH)
if [ ! -e "$TESTDATA/busybox-$arch.tar.xz" ]; then
	img=$(mktemp -d)
	chmod 0755 "$img" # the image's root: its users other than root must get through it
	mkdir -p "$img/bin" "$img/etc" "$img/dev" "$img/proc" "$img/sys" "$img/tmp" "$img/root"
	cp /bin/busybox "$img/bin/busybox"
	for a in $("$img/bin/busybox" --list); do [ -e "$img/bin/$a" ] || ln -s busybox "$img/bin/$a"; done
	echo "root:x:0:0:root:/root:/bin/sh" >"$img/etc/passwd"
	echo "root:x:0:" >"$img/etc/group"
	tar -C "$img" -cJf "$TESTDATA/busybox-$arch.tar.xz" .
	rm -rf "$img"
fi
[ -e "$TESTDATA/debian-$arch.tar.xz" ] || : >"$TESTDATA/debian-$arch.tar.xz"

# 4. The suite's runc: ocivol with a config and state of its own.
STATE=$WORK/state-$MODE
rm -rf "$STATE"
mkdir -p "$STATE"
echo 'runtime = "/usr/sbin/runc"' >"$STATE/config.toml"
WRAPPER=$WORK/runc-$MODE
{
	echo '#!/bin/bash'
	if [ "$MODE" = volumes ]; then
		# Before a create or run, the bundle's config.json (the working directory or --bundle)
		# gets an anonymous volume. The suite's own runc calls (`--root R CMD …`) are parsed
		# just enough to find the command and the bundle.
		cat <<'EOF'
cmd="" bundle="."
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	a=${args[i]}
	if [ -z "$cmd" ]; then
		case $a in --root | --log | --log-format | --criu | --rootless) i=$((i + 1)) ;; -*) ;; *) cmd=$a ;; esac
	else
		case $a in --bundle | -b) bundle=${args[i + 1]} ;; --bundle=* | -b=*) bundle=${a#*=} ;; esac
	fi
done
if [ "$cmd" = create ] || [ "$cmd" = run ]; then
	f=$bundle/config.json
	if [ -f "$f" ] && jq -e . "$f" >/dev/null 2>&1; then
		jq '.annotations["io.ocivol.volumes"] = "/ocivol-anon"' "$f" >"$f.ocivol" && mv "$f.ocivol" "$f"
	fi
fi
EOF
	fi
	echo "exec $OCIVOL --config $STATE/config.toml --root $STATE/root --run-root $STATE/run runtime \"\$@\""
} >"$WRAPPER"
chmod +x "$WRAPPER"
[ "$MODE" != runc ] || WRAPPER=/usr/sbin/runc

# 5. The suite, under a tty (several tests need one).
DEFAULT_TESTS="help version spec create start start_hello start_detached run delete kill list
state ps pause exec mounts mask cwd umask hooks root debug dev no_pivot tty"
tests=()
for t in ${RUNC_SUITE_TESTS:-$DEFAULT_TESTS}; do tests+=("$SRC/tests/integration/$t.bats"); done
echo "runc-suite ($MODE): RUNC=$WRAPPER" >&2
export RUNC=$WRAPPER
status=0
script -q -e -c "bats --tap ${tests[*]}" /dev/null | tee "$WORK/result-$MODE.tap" || status=$?
pass=$(grep -c '^ok ' "$WORK/result-$MODE.tap" || true)
fail=$(grep -c '^not ok ' "$WORK/result-$MODE.tap" || true)
skip=$(grep -c '^ok .*# skip' "$WORK/result-$MODE.tap" || true)
echo "runc-suite ($MODE): $pass ok ($skip of them skipped), $fail not ok; $WORK/result-$MODE.tap" |
	tee "$WORK/summary-$MODE.txt"
if [ "$MODE" != runc ] && [ -e "$WORK/result-runc.tap" ]; then
	# Tests whose result differs from plain runc's on this machine.
	results() { sed -n 's/^\(ok\|not ok\) [0-9]* \(.*\)$/\2\t\1/p' "$1" | sort; }
	differ=$(join -t "$(printf '\t')" <(results "$WORK/result-runc.tap") <(results "$WORK/result-$MODE.tap") |
		awk -F '\t' '$2 != $3 { print "runc-suite (" mode "): differs from plain runc: " $1 " (runc: " $2 ", ocivol: " $3 ")" }' mode="$MODE")
	[ -z "$differ" ] || echo "$differ" | tee -a "$WORK/summary-$MODE.txt"
	# What counts is ocivol doing what runc does on this machine.
	status=0
	[ -z "$differ" ] || status=1
fi
# The baseline only records what this machine allows.
[ "$MODE" != runc ] || status=0
leftover=$(grep -c "$STATE" /proc/self/mountinfo || true)
[ "$leftover" = 0 ] || echo "runc-suite: $leftover mounts left under $STATE" >&2
exit "$status"
