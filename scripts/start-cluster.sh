#!/usr/bin/env bash
# The main job: a local 3-node Sheepdog cluster on the `local` driver (ports 7000-7002, zones
# 0-2, data under $SHEEPDOG_DEMO_DIR, default /var/lib/sheepdog-demo), formatted with 3 copies,
# with sheepfs mounted on /sheep once sheepfs is built. Installs what it needs; safe to run
# again (running nodes are left alone, a formatted cluster is not formatted again).
# `scripts/stop-cluster.sh` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
dir=${SHEEPDOG_DEMO_DIR:-/var/lib/sheepdog-demo}
mountpoint=${SHEEPFS_MOUNTPOINT:-/sheep}

bash scripts/install-deps.sh
# sheep, dog and sheepfs on PATH, as scripts written for Sheepdog expect
for prog in sheep dog sheepfs; do ln -sf "$repo/bin/$prog" "/usr/local/bin/$prog"; done

# a pid counts as running when its process exists and is not a zombie
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }

mkdir -p "$dir"
for i in 0 1 2; do
  node_dir="$dir/n$i"
  if [ -f "$node_dir/lock" ] && alive "$(cat "$node_dir/lock")"; then
    echo "sheep $i already runs (pid $(cat "$node_dir/lock"))"
  else
    "$repo/bin/sheep" -p "700$i" -z "$i" -c "local:$dir/shm" "$node_dir"
    echo "sheep $i started on port 700$i"
  fi
done

if "$repo/bin/dog" cluster info | grep -q 'Waiting for cluster to be formatted'; then
  "$repo/bin/dog" cluster format -c 3
fi

if [ -x "$repo/bin/sheepfs" ] && "$repo/bin/sheepfs" --help >/dev/null 2>&1; then
  mkdir -p "$mountpoint"
  if ! mountpoint -q "$mountpoint"; then "$repo/bin/sheepfs" "$mountpoint"; fi
  echo "sheepfs mounted on $mountpoint"
else
  echo "sheepfs is not built yet: no mount on $mountpoint"
fi

"$repo/bin/dog" node list
"$repo/bin/dog" cluster info
