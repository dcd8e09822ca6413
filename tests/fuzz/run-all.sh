#!/usr/bin/env bash
# Runs every fuzz target in BUILD_DIR for SECONDS each; fails on the first crash.
set -euo pipefail
build=${1:?build dir}
seconds=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
status=0
for bin in "$build"/tests/fuzz/*_fuzz; do
  [[ -x "$bin" ]] || continue
  name=$(basename "$bin")
  corpus=$(mktemp -d)
  seeds="$here/corpus/${name%_fuzz}"
  [[ -d "$seeds" ]] && cp -r "$seeds"/. "$corpus"/
  echo "fuzz: $name for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -print_final_stats=0 "$corpus" >"$corpus.log" 2>&1; then
    tail -n 60 "$corpus.log"
    echo "fuzz: $name FAILED"
    status=1
  fi
  rm -rf "$corpus" "$corpus.log"
done
if ((status == 0)); then echo "fuzz: all targets ran without a crash"; fi
exit $status
