#!/usr/bin/env bash
# `make bench`: the project's speed regression guard.
#   1. wsgate against HAProxy 2.6 and nginx 1.22 (Debian's), same backends, same loads,
#      alternating, several rounds, over ws:// and then over wss:// with each proxy terminating
#      TLS (tests/bench/bench.py; configs in tests/bench/peers/).
#   2. The frame-path micro-benchmarks (Google Benchmark).
# BENCH_ROUNDS, BENCH_SECONDS and BENCH_IDLE shorten a run; BENCH_ONLY=tls (or plain) runs only
# the TLS (wss) rows (or only the plain ones) and skips step 2; extra arguments go to bench.py.
set -euo pipefail
build=${1:?build dir}
shift
cd "$(dirname "$0")/../.."
bash packaging/install-deps.sh --bench
cmake --build "$build" --target wsgate wsload frame_bench >/dev/null
echo "== wsgate vs HAProxy vs nginx =="
/usr/bin/python3 tests/bench/bench.py --build "$build" "$@"
# A run of some rows only (BENCH_ONLY, --only) is a quick look: no frame-path benchmarks.
if [[ -n "${BENCH_ONLY:-}" || " $* " == *" --only"* ]]; then
  exit 0
fi
echo "== frame path (parse + check + unmask, UTF-8) =="
"$build/tests/bench/frame_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_min_time=0.2
