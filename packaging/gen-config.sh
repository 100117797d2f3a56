#!/usr/bin/env bash
# Regenerates packaging/ringfan.toml from `ringfan --print-config`: every
# key with its help, commented out at its default, so that the file sets
# nothing until a line is uncommented. Run after adding or changing a flag
# (tests/config.rs checks that the file lists every key).
# Usage: bash packaging/gen-config.sh [path/to/ringfan]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/ringfan}
[ -x "$bin" ] || cargo build --bin ringfan
{
  cat <<'HEAD'
# ringfan configuration: every key, commented out at its default (generated
# by packaging/gen-config.sh from `ringfan --print-config`). Uncomment and
# change what you need; use with `ringfan --config /etc/ringfan/ringfan.toml`.
# RINGFAN_<KEY> in the environment wins over this file, and a flag over both.
# Secrets are never values here: name files (jwt_secret_file, tls_key) or
# variables (jwt_secret_env). See docs/operations.md, "Configuration".
HEAD
  echo
  # Without ringfan's own header (up to the first blank line) and the
  # "# default" source notes; value lines commented out.
  # (env -i: no RINGFAN_ variable of this shell changes a default.)
  env -i "$bin" --print-config \
    | sed -e '1,/^$/d' -e 's/  # default$//' -e 's/^\([a-z0-9_]* = \)/# \1/' \
      -e 's/^# # \([a-z0-9_]* = (not set)\)/# \1/'
} > packaging/ringfan.toml
