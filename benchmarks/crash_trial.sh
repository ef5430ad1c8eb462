#!/usr/bin/env bash
# The crash trial of docs/reliability.md: `mito write` of FILE killed with SIGKILL after a
# random 0.1-0.9 s (MAX_S=3: 0.1-2.9 s), then `mito sql count(*)` on the same directory,
# CYCLES times. Prints each count and the number of directories that did not open.
# Usage: benchmarks/crash_trial.sh MITO FILE [CYCLES] [MAX_S]
set -u
mito=$1 file=$2 cycles=${3:-30} max_s=${4:-1}
dir=$(mktemp -d)
fail=0
for i in $(seq 1 "$cycles"); do
  "$mito" write --data-dir "$dir/D" "$file" >/dev/null 2>&1 &
  pid=$!
  sleep "$((RANDOM % max_s)).$((RANDOM % 9 + 1))"
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  if out=$("$mito" sql --data-dir "$dir/D" --format csv "SELECT count(*) FROM cpu" 2>&1); then
    echo "cycle $i: $(echo "$out" | tail -1) rows"
  else
    fail=$((fail + 1)); echo "cycle $i: DOES NOT OPEN: $out"
  fi
done
echo "cycles=$cycles failures=$fail"
rm -rf "$dir"
[ "$fail" -eq 0 ]
