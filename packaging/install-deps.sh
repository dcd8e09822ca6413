#!/usr/bin/env bash
# Installs every Debian package wsgate's build, tests and demo need. Idempotent:
# when all packages are present it only runs dpkg-query and exits.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev
  libevent-dev libssl-dev libyaml-cpp-dev liblua5.4-dev liburing-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-pytest python3-websockets
  node-ws nodejs
  procps logrotate
  # systemd-analyze (tests/integration/test_systemd.py verifies packaging/systemd's units);
  # dpkg-dev (dpkg-shlibdeps: the .deb's Depends), shellcheck (its maintainer scripts) and
  # man-db for `make package` and tests/integration/test_package.py
  systemd dpkg-dev shellcheck man-db
  # python3-yaml: tests/integration/test_deploy.py reads packaging/kubernetes
  python3-yaml
  # python3-dnslib: the DNS server tests/integration/test_discovery.py steers
  python3-dnslib
  # a real browser through wsgate (tests/integration/test_browser.py), and a third client
  # library nobody here wrote, Autobahn|Python (tests/integration/test_autobahn.py)
  chromium python3-autobahn
  # promtool only (tests/integration/test_monitoring.py checks packaging/prometheus and
  # packaging/grafana with it); the server it comes with is stopped below.
  prometheus
  # an L4 balancer nobody here wrote, sending PROXY v1 and v2 in front of wsgate
  # (tests/integration/test_proxy_protocol.py starts its own; the service is stopped below)
  haproxy
)

# `make bench` compares wsgate with HAProxy and nginx from Debian (install-deps.sh --bench).
if [[ "${1:-}" == "--bench" ]]; then
  PACKAGES+=(nginx)  # haproxy is in the main list
fi
# --build: only what building the binary and its .deb takes (the Dockerfile's build stage).
if [[ "${1:-}" == "--build" ]]; then
  PACKAGES=(
    build-essential cmake ninja-build pkg-config dpkg-dev
    libevent-dev libssl-dev libyaml-cpp-dev liblua5.4-dev liburing-dev
    libspdlog-dev libfmt-dev nlohmann-json3-dev
  )
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

# npm: Debian's package, unless a Node.js build that ships its own npm is installed
# (NodeSource's nodejs provides /usr/bin/npm and conflicts with Debian's npm).
if [[ "${1:-}" != "--build" ]] && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends also keeps prometheus-node-exporter (a daemon on :9100) out.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian's prometheus starts and enables a Prometheus server on :9090 where services start
# on install (not in containers whose policy-rc.d forbids it). Only promtool is wanted:
# stop and disable the server, once, when this run installed it.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if [[ -d /run/systemd/system ]]; then
    $SUDO systemctl stop prometheus.service >/dev/null 2>&1 || true
  else
    $SUDO service prometheus stop >/dev/null 2>&1 || true
  fi
  # Both boot paths: systemctl disable works without a running systemd too.
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable prometheus.service >/dev/null 2>&1 || true
  fi
  $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
# Debian's haproxy starts its service too (on /etc/haproxy/haproxy.cfg); the tests run
# their own haproxy processes on ports they choose: stop and disable it, the same way.
if [[ " ${missing[*]} " == *" haproxy "* ]]; then
  if [[ -d /run/systemd/system ]]; then
    $SUDO systemctl stop haproxy.service >/dev/null 2>&1 || true
  else
    $SUDO service haproxy stop >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable haproxy.service >/dev/null 2>&1 || true
  fi
  $SUDO update-rc.d haproxy disable >/dev/null 2>&1 || true
fi
