#!/usr/bin/env bash
# `make bench`: the project's speed regression guard. Today: the frame-path
# micro-benchmarks; the load comparison against HAProxy and nginx joins it with the
# performance issue (tests/bench/peers/).
set -euo pipefail
build=${1:?build dir}
cmake --build "$build" --target frame_bench >/dev/null
echo "== frame path (parse + check + unmask, UTF-8) =="
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
"$build/tests/bench/frame_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_min_time=0.2
