#!/bin/sh
# doc-section.sh — puts a generated table into a page of docs/ between its markers, leaving the
# rest of the page as it is. The benchmark and report scripts all write their tables this way.
#
#   scripts/doc-section.sh DOC MARKER TABLE
#
# replaces what is between the lines "<!-- MARKER begin -->" and "<!-- MARKER end -->" of DOC
# with a blank line and the file TABLE. Fails, changing nothing, when DOC has no such marker.
set -eu
[ $# -eq 3 ] || { echo "usage: doc-section.sh DOC MARKER TABLE" >&2; exit 2; }
doc=$1 marker=$2 table=$3
grep -qxF "<!-- $marker begin -->" "$doc" ||
    { echo "doc-section.sh: $doc has no marker <!-- $marker begin -->" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
awk -v begin="<!-- $marker begin -->" -v end="<!-- $marker end -->" -v table="$table" '
    $0 == begin { print; print ""; while ((getline line < table) > 0) print line; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }
' "$doc" >"$tmp"
cat "$tmp" >"$doc"
