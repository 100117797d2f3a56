#!/usr/bin/env bash
# Write a Docker/containerd seccomp profile that is the engine's own default
# plus io_uring_setup, io_uring_enter and io_uring_register, the three calls
# ringfan needs and that the defaults have refused since moby/moby#46762
# (Docker Engine 25) and containerd/containerd#9320 (containerd 2.0).
#
#   packaging/seccomp-io_uring.sh default.json > seccomp-io_uring.json
#   docker run --security-opt seccomp=seccomp-io_uring.json ... ringfan
#
# default.json is the default profile of the engine you run: the file
# profiles/seccomp/default.json of github.com/moby/moby at the tag of your
# Docker Engine release (`docker version --format '{{.Server.Version}}'`).
# Deriving it from your engine's own file, rather than shipping a copy,
# keeps every other rule exactly as your engine has it.
#
# The calls are added to the profile's first unconditional allow rule (no
# arguments, no includes or excludes), so they are allowed on every
# architecture and with any capabilities, and taken out of any rule that
# refuses them. Running it on its own output changes nothing. Needs jq.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
command -v jq >/dev/null || { echo "seccomp-io_uring.sh: needs jq (apt-get install jq)" >&2; exit 1; }
[ -r "$1" ] || { echo "seccomp-io_uring.sh: cannot read $1" >&2; exit 1; }

jq '
  def plain: .action == "SCMP_ACT_ALLOW" and (.names | type) == "array"
    and ((.args // []) | length) == 0
    and ((.includes // {}) | length) == 0
    and ((.excludes // {}) | length) == 0;
  if (.syscalls | type) != "array" then
    error("no \"syscalls\" list: is this a Docker seccomp profile?")
  else . end
  | ([.syscalls | to_entries[] | select(.value | plain) | .key] | first) as $i
  | if $i == null then
      error("no unconditional SCMP_ACT_ALLOW rule to extend: is this the default profile?")
    else . end
  | ["io_uring_enter", "io_uring_register", "io_uring_setup"] as $uring
  | .syscalls[$i].names |= (. + ($uring - .))
  | .syscalls |= map(if .action == "SCMP_ACT_ALLOW" then . else .names -= $uring end
                     | select((.names | length) > 0))
' "$1"
