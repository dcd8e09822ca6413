#!/usr/bin/env bash
# Runs every fuzz target in BUILD_DIR for SECONDS each, two at a time (one per core);
# fails when any target crashes.
set -euo pipefail
build=${1:?build dir}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)

run_one() {
  local bin=$1 seconds=$2 here=$3
  local name corpus log
  name=$(basename "$bin")
  corpus=$(mktemp -d)
  log=$(mktemp)
  if [[ -d "$here/corpus/${name%_fuzz}" ]]; then cp -r "$here/corpus/${name%_fuzz}"/. "$corpus"/; fi
  if "$bin" -max_total_time="$seconds" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    echo "fuzz: $name ${seconds}s ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs)"
    rm -rf "$corpus" "$log"
  else
    tail -n 60 "$log"
    echo "fuzz: $name FAILED"
    rm -rf "$corpus" "$log"
    return 1
  fi
}
export -f run_one

targets=$(find "$build/tests/fuzz" -maxdepth 1 -name '*_fuzz' -type f -executable | sort)
if [[ -z "$targets" ]]; then
  echo "fuzz: no targets built in $build/tests/fuzz"
  exit 1
fi
if echo "$targets" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$here"; then
  echo "fuzz: all targets ran without a crash"
else
  exit 1
fi
