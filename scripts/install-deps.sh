#!/usr/bin/env bash
# Installs what sheep, dog, sheepfs and their tests need on Debian 12 with Node 20, as root:
# Debian packages (FUSE, ZooKeeper, corosync with the libcpg headers and a C++ toolchain for the
# corosync driver's native binding, QEMU tools with qemu-img's iscsi:// driver, tgt, libiscsi
# tools, fio for `npm run bench -- iops`) and the npm packages of package-lock.json. Safe to run
# again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(libfuse2 fuse zookeeper corosync libcpg-dev libcorosync-common-dev build-essential python3 iproute2 qemu-utils qemu-block-extra tgt libiscsi-bin attr fio)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# npm ci builds the corosync binding; node_modules kept from before the headers came does not
if [ ! -f native/corosync/build/Release/sheepdog_cpg.node ]; then
  node scripts/build-native.mjs
fi
npx tsc -p tsconfig.json
