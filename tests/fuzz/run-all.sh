#!/usr/bin/env bash
# Runs every fuzz target in BUILD_DIR for SECONDS each, two at a time (one per core), and
# keeps what they find:
#   - inputs that reach new code are merged (libFuzzer -merge=1, so only those adding
#     coverage over the committed corpus stay) into BUILD_DIR/new-corpus/<name>/; copy them
#     into tests/fuzz/corpus/<name>/ and commit them to keep them;
#   - a crash, leak, timeout or out-of-memory input is copied into
#     tests/fuzz/regressions/<name>/, replayed from then on by ctest (fuzz_replay.<name>):
#     commit it with the fix. The run then fails.
# Seeds: tests/fuzz/corpus/<name>/, tests/fuzz/regressions/<name>/ (inputs named
# *.known-failure excepted: they still fail by design) and the last runs' new-corpus.
# tests/fuzz/<name>.dict, when present, is passed as the target's dictionary.
#
# Time: SECONDS per target when given; otherwise the targets share one budget, FUZZ_BUDGET
# target-seconds (300 by default: with ten targets, 30 s each, two at a time, about 2.5
# minutes), so a new target does not lengthen CI.
#
#   run-all.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=$(cd "${1:?build dir}" && pwd)
seconds=${2:-}
here=$(cd "$(dirname "$0")" && pwd)

run_one() {
  local bin=$1 seconds=$2 here=$3 build=$4
  local name work seeds log artifacts kept merged
  name=$(basename "$bin")
  name=${name%_fuzz}
  work=$(mktemp -d)
  seeds=$(mktemp -d)
  artifacts=$(mktemp -d)
  merged=$(mktemp -d)
  log=$(mktemp)
  kept="$build/new-corpus/$name"
  mkdir -p "$kept"
  # libFuzzer writes what it finds into its first corpus directory: an empty one.
  for dir in "$here/corpus/$name" "$here/regressions/$name" "$kept"; do
    [[ -d "$dir" ]] || continue
    find "$dir" -maxdepth 1 -type f ! -name '*.known-failure' ! -name '.*' \
      -exec cp -t "$seeds" {} +
  done
  local dict=()
  [[ -f "$here/$name.dict" ]] && dict=(-dict="$here/$name.dict")

  local status=0
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$work" "$seeds" >"$log" 2>&1 || status=$?

  local runs cov
  runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*$' || true)
  local found
  found=$(find "$artifacts" -type f | wc -l)
  if [[ $status -ne 0 || $found -gt 0 ]]; then
    tail -n 60 "$log"
    mkdir -p "$here/regressions/$name"
    local f
    for f in "$artifacts"/*; do
      [[ -f "$f" ]] || continue
      cp "$f" "$here/regressions/$name/"
      echo "fuzz: $name: kept tests/fuzz/regressions/$name/$(basename "$f")"
    done
    echo "fuzz: $name FAILED: commit the input(s) above with the fix; ctest replays them" \
         "(fuzz_replay.$name). Reproduce: $bin tests/fuzz/regressions/$name/<file>"
    rm -rf "$work" "$seeds" "$artifacts" "$merged" "$log"
    return 1
  fi

  # Keep what adds coverage over the committed corpus: merge this run's finds and the
  # earlier kept ones into a copy of the corpus, and keep what the merge added. Edges only
  # (-use_counters=0): hit counts would keep hundreds of near-duplicates per run.
  [[ -d "$here/corpus/$name" ]] && cp -r "$here/corpus/$name"/. "$merged"/
  ls -A "$merged" | sort >"$log.before"
  local new=0
  if [[ -n "$(ls -A "$work" "$kept")" ]]; then
    if "$bin" -merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$merged" "$work" "$kept" >"$log" 2>&1; then
      rm -rf "$kept"
      mkdir -p "$kept"
      ls -A "$merged" | sort | comm -13 "$log.before" - >"$log.new"
      new=$(wc -l <"$log.new")
      (cd "$merged" && xargs -r cp -t "$kept" <"$log.new")
    else
      tail -n 20 "$log"
      echo "fuzz: $name: merging the new inputs failed; kept inputs left as they were"
    fi
  fi
  rm -f "$log.before" "$log.new"
  local note=""
  if [[ $new -gt 0 ]]; then
    note=", $new new corpus inputs in $kept (to keep: cp $kept/* tests/fuzz/corpus/$name/)"
  fi
  echo "fuzz: $name ${seconds}s ok (${runs:-?} runs, cov ${cov:-?}$note)"
  rm -rf "$work" "$seeds" "$artifacts" "$merged" "$log"
}
export -f run_one

targets=$(find "$build/tests/fuzz" -maxdepth 1 -name '*_fuzz' -type f -executable | sort)
if [[ -z "$targets" ]]; then
  echo "fuzz: no targets built in $build/tests/fuzz"
  exit 1
fi
if [[ -z "$seconds" ]]; then
  count=$(echo "$targets" | wc -l)
  seconds=$(( ${FUZZ_BUDGET:-300} / count ))
  (( seconds >= 10 )) || seconds=10
  echo "fuzz: $count targets share FUZZ_BUDGET=${FUZZ_BUDGET:-300} target-seconds: ${seconds}s each"
fi
if echo "$targets" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$here" "$build"; then
  echo "fuzz: all targets ran without a failure"
else
  exit 1
fi
