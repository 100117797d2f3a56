#!/usr/bin/env bash
# Every test ringfan has, from a fresh clone: `bash tests/run.sh`.
# Installs what the tests need (a Python venv with websockets, pytest and
# the kosoku Autobahn runner; Debian's chromium for the browser test) by
# itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "build tools (a C compiler and perl: mimalloc and aws-lc-rs build C)"
if ! command -v cc >/dev/null || ! command -v perl >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q && $SUDO apt-get install -y -q gcc perl
fi

step "chromium (test_chromium.py drives a real browser over wss://, test_demo.py the demo board)"
if ! command -v chromium >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
fi

step "nginx and haproxy (test_proxies.py runs ringfan behind both)"
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
if ! have nginx || ! have haproxy; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q && $SUDO apt-get install -y -q nginx haproxy
fi

step "nats-server (the cluster tests run ringfan nodes against a real JetStream server)"
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q && $SUDO apt-get install -y -q nats-server
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "Rust unit, property and integration tests (real sockets, real binary)"
# The cluster tests (Rust and Python) skip without nats-server unless this
# says it must be there: from here on it must. (Not RINGFAN_*: ringfan
# reads those as settings and notes an unknown one on stderr.)
export NATS_SERVER_REQUIRED=1
cargo test --workspace

step "Python environment (tests/requirements.txt)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt

step "release build (the broker, and the load generator whose feed drives the demo board in test_demo.py)"
cargo build --release -p ringfan -p ringfan-loadgen --bin ringfan --bin ringfan-loadgen

step "Python websockets client tests"
RINGFAN_BIN=target/release/ringfan RINGFAN_LOADGEN=target/release/ringfan-loadgen \
  .venv/bin/python -m pytest -q tests/python

step "ringfan.js: types and Node tests"
# Node >= 20 with npm: Debian bookworm's own nodejs is 18, too old.
if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
  echo "clients/js needs Node >= 20 and npm (Debian 12's nodejs is 18: NodeSource's nodejs 20, or Debian 13)" >&2
  exit 1
fi
# Node 20 has WebSocket only behind --experimental-websocket; 22+ by default.
root=$PWD
ws_flag=$(node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' && echo || echo --experimental-websocket)
(cd clients/js && npm ci --silent --no-audit --no-fund && npx tsc --noEmit)
(cd clients/js && RINGFAN_BIN="$root/target/release/ringfan" node $ws_flag --test --test-timeout=60000 --test-force-exit test/*.test.js)

step "Python client (clients/python)"
.venv/bin/python -m pip install -q ./clients/python
RINGFAN_BIN=target/release/ringfan .venv/bin/python -m pytest -q clients/python/tests

step "Autobahn TestSuite, sections 1-10 and 12-13 (permessage-deflate), against /echo with 2 shards"
.venv/bin/python tests/autobahn/run.py --server target/release/ringfan --out reports/autobahn

step "Autobahn TestSuite, sections 1-10, over TLS (wss://, through a local ws-to-wss forwarder)"
.venv/bin/python tests/autobahn/run.py --server target/release/ringfan --out reports/autobahn-tls --tls
