#!/usr/bin/env bash
# Installs the comparison broker: uWebSockets through socketify's prebuilt
# bindings, in benches/uws/venv. It needs the system's libuv (Debian:
# libuv1), which socketify's library links against.
set -euo pipefail
cd "$(dirname "$0")"
if ! ldconfig -p | grep -q 'libuv\.so\.1'; then
    if [[ $(id -u) == 0 ]]; then
        apt-get install -y -q libuv1 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libuv1 >/dev/null; }
    else
        echo "benches/uws/setup.sh: socketify needs libuv.so.1: apt-get install libuv1" >&2
        exit 1
    fi
fi
[[ -x venv/bin/python ]] || python3 -m venv venv
venv/bin/pip install -q socketify==0.0.31
venv/bin/python -c 'import socketify' # fails here, not mid-benchmark
