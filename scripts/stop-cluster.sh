#!/usr/bin/env bash
# Stops what scripts/start-cluster.sh started: unmounts sheepfs and stops the three sheep by the
# PIDs recorded in their base directories.
set -uo pipefail
dir=${SHEEPDOG_DEMO_DIR:-/var/lib/sheepdog-demo}
mountpoint=${SHEEPFS_MOUNTPOINT:-/sheep}
if mountpoint -q "$mountpoint" 2>/dev/null; then fusermount -u "$mountpoint"; fi
for i in 0 1 2; do
  pid=$(cat "$dir/n$i/lock" 2>/dev/null) || continue
  kill "$pid" 2>/dev/null && echo "stopped sheep $i (pid $pid)"
done
