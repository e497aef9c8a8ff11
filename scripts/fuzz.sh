#!/bin/sh
# fuzz.sh GO FUZZTIME FUZZMINTIME PKG:TARGET... — runs each fuzz target for
# FUZZTIME and fails on the first real finding.
#
# Go 1.26's fuzz coordinator can end a clean run with a bare "context
# deadline exceeded" at the -fuzztime boundary when its workers are slow to
# stop (a loaded machine): go.dev/issue/75804, fixed in Go 1.27. Such a run
# wrote no failing input. A run that fails that way, wrote nothing under
# testdata/fuzz/TARGET and whose corpus replays cleanly counts as passed,
# and says so; any other failure fails.
set -u
gocmd=$1 fuzztime=$2 minimize=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ft in "$@"; do
	pkg=${ft%%:*} target=${ft##*:}
	crashers=$pkg/testdata/fuzz/$target
	before=$(ls "$crashers" 2>/dev/null | sort)
	echo "fuzz: $pkg $target for $fuzztime"
	if "$gocmd" test -run='^$' -fuzz="^$target\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimize" "$pkg" >"$out" 2>&1; then
		cat "$out"
		continue
	fi
	cat "$out"
	after=$(ls "$crashers" 2>/dev/null | sort)
	if grep -q '^    context deadline exceeded$' "$out" && [ "$before" = "$after" ] &&
		"$gocmd" test -count=1 -run="^$target\$" "$pkg"; then
		echo "fuzz: $target: Go's fuzz-deadline race (go.dev/issue/75804): no failing input written, the corpus replays cleanly"
		continue
	fi
	echo "fuzz: $target failed" >&2
	exit 1
done
