#!/usr/bin/env bash
# Apply tuning/sysctl.conf to the running kernel and say what changed.
# Settings this kernel lacks, or that a container forbids, are reported and
# skipped; nothing else is touched. Limits (limits.conf) need a new login
# session; this script only prints the current ones.
# `--dry-run` prints what would change and writes nothing.
set -u
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
cd "$(dirname "$0")"
changed=0 skipped=0
while IFS= read -r line; do
  line="${line%%#*}"
  [[ "$line" =~ ^[[:space:]]*$ ]] && continue
  key="$(echo "${line%%=*}" | xargs)"
  want="$(echo "${line#*=}" | xargs)"
  path="/proc/sys/${key//.//}"
  if [ ! -e "$path" ]; then
    echo "skip   $key: not in this kernel"
    skipped=$((skipped + 1))
    continue
  fi
  have="$(xargs < "$path")"
  if [ "$have" = "$want" ]; then
    echo "same   $key = $have"
    continue
  fi
  if [ "$dry" = 1 ]; then
    echo "would  $key: $have -> $want"
    changed=$((changed + 1))
  elif printf '%s\n' "$want" > "$path" 2>/dev/null; then
    echo "set    $key: $have -> $want"
    changed=$((changed + 1))
  else
    echo "skip   $key: cannot write (not root, or read-only in this container); stays $have"
    skipped=$((skipped + 1))
  fi
done < sysctl.conf
echo "sysctl: $changed changed, $skipped skipped"
echo "limits: open files soft $(ulimit -Sn) hard $(ulimit -Hn); locked memory $(ulimit -l)"
echo "        to raise them, install tuning/limits.conf in /etc/security/limits.d/ and log in again"
