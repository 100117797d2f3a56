#!/usr/bin/env bash
# Copies the JavaScript client (clients/js/ringfan.js) into demo/, which
# `ringfan --static demo` serves as one directory: the page imports
# ./ringfan.js, and a static root cannot reach ../clients. The copy is
# committed; tests/python/test_demo.py fails when it differs from the
# client, so run this after changing clients/js/ringfan.js.
set -euo pipefail
cd "$(dirname "$0")/.."
cp clients/js/ringfan.js demo/ringfan.js
echo "demo/ringfan.js updated from clients/js/ringfan.js"
