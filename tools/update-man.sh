#!/bin/sh
# update-man.sh - regenerate the OPTIONS list of man/kvsd.8 in place from
# config_options[] (src/config.c), between the lines
#   .\" BEGIN GENERATED OPTIONS   and   .\" END GENERATED OPTIONS
#
# usage: tools/update-man.sh [GEN_OPTIONS [PAGE]]
#   GEN_OPTIONS  the built generator (default: tools/gen-options under the
#                current directory, i.e. run this from the build directory,
#                or $GEN_OPTIONS)
#   PAGE         the page to rewrite (default: man/kvsd.8 next to this script)
# Build the generator first: make tools/gen-options
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
gen=${1:-${GEN_OPTIONS:-./tools/gen-options}}
page=${2:-$here/man/kvsd.8}

[ -x "$gen" ] || { echo "update-man.sh: no generator at $gen (make tools/gen-options, or pass its path)" >&2; exit 1; }
grep -q '^\.\\" BEGIN GENERATED OPTIONS$' "$page" && grep -q '^\.\\" END GENERATED OPTIONS$' "$page" ||
    { echo "update-man.sh: $page lacks the GENERATED OPTIONS markers" >&2; exit 1; }

block=$(mktemp) out=$(mktemp)
trap 'rm -f "$block" "$out"' EXIT
"$gen" >"$block"
awk -v block="$block" '
    /^\.\\" BEGIN GENERATED OPTIONS$/ { print; while ((getline l < block) > 0) print l; skip = 1; next }
    /^\.\\" END GENERATED OPTIONS$/   { skip = 0 }
    !skip { print }
' "$page" >"$out"
if cmp -s "$out" "$page"; then
    echo "update-man.sh: $page is up to date"
else
    cat "$out" >"$page"
    echo "update-man.sh: regenerated the OPTIONS list of $page"
fi
