#!/usr/bin/env bash
# `make run`: starts the two demo echo backends and wsgate in front of them, in the
# foreground. Ctrl-C stops all three.
set -euo pipefail
bin=${1:?usage: run-demo.sh WSGATE_BIN CONFIG}
config=${2:-conf/wsgate.yaml}
here=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for spec in echo1:9001 echo2:9002; do
  name=${spec%%:*}
  port=${spec##*:}
  "$python" "$here/tests/backends/echo_backend.py" --listen "127.0.0.1:$port" --name "$name" &
  pids+=($!)
done

"$bin" --check -c "$config" >/dev/null
echo "wsgate: ws://127.0.0.1:8080/ and http://127.0.0.1:8080/ -> echo1 (9001), echo2 (9002)"
echo "try: $python -m websockets ws://127.0.0.1:8080/   or   curl -i http://127.0.0.1:8080/"
"$bin" -c "$config" &
pids+=($!)
wait "${pids[-1]}"
