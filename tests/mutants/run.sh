#!/usr/bin/env bash
# Mutation check: applies each tests/mutants/*.mutant to a scratch copy of the tree and
# expects its tests to fail. Usage: tests/mutants/run.sh [--check] [GLOB...]; see
# docs/testing.md. This wrapper only takes the scratch lock (one run at a time); run.py works.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scratch=${MUTANTS_SCRATCH:-$root/build-mutants}
if [[ "${1:-}" == "--check" ]]; then  # reads the working tree only: no lock, no scratch
  exec /usr/bin/python3 "$root/tests/mutants/run.py" --root "$root" --scratch "$scratch" "$@"
fi
mkdir -p "$scratch"
exec 9>"$scratch/.lock"
if ! flock -n 9; then
  echo "mutants: another run holds $scratch/.lock; waiting for it" >&2
  flock 9
fi
exec /usr/bin/python3 "$root/tests/mutants/run.py" --root "$root" --scratch "$scratch" "$@"
