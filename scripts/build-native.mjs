// Builds the optional native addons at `npm install`/`npm ci` (package.json "install"), each on
// its own, and never fails the install: an addon that cannot be built is left absent and the
// program says so where it matters.
// - native/corosync: the libcpg binding of the corosync cluster driver. Built only when
//   corosync's development headers are installed (scripts/install-deps.sh adds them); without
//   it `sheep -c corosync` explains what is missing, and the other drivers do not need it.
// - native/storeio: syncfs(2) for the object store's flush, preadv2(RWF_NOWAIT) for reads the
//   page cache holds, writes in small pieces in one pool job, and mallopt(3) for dog's data
//   commands; without it a flush fdatasyncs the objects written since the last one, one by one,
//   every read goes to the thread pool, a large write takes a pool trip per piece, and dog moves
//   bytes with glibc's default malloc settings.
// - native/crc32: CRC-32 with carry-less multiplication for the checksum layer; without it the
//   layer uses zlib's crc32 (the same values, several times slower).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CPG_HEADER = '/usr/include/corosync/cpg.h'

const ADDONS = [
  {
    dir: 'corosync',
    output: 'sheepdog_cpg.node',
    missing: 'sheep -c corosync will be unavailable',
    prerequisite: () => (fs.existsSync(CPG_HEADER) ? undefined : `${CPG_HEADER} is missing (Debian: apt-get install libcpg-dev libcorosync-common-dev)`),
  },
  {
    dir: 'storeio',
    output: 'sheepdog_storeio.node',
    missing: 'a store flush will fdatasync object by object, every read go to the thread pool, dog keep the default malloc settings',
    prerequisite: () => undefined,
  },
  {
    dir: 'crc32',
    output: 'sheepdog_crc32.node',
    missing: "checksums will be computed by zlib's crc32",
    prerequisite: () => undefined,
  },
]

/** Why nothing can be built at all, or the node-gyp command line. */
async function gypCommand() {
  if (process.env.SHEEPDOG_SKIP_NATIVE) return 'SHEEPDOG_SKIP_NATIVE is set'
  // node-gyp: ours (devDependency), else the one npm runs install scripts with
  const local = path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
  const gyp = fs.existsSync(local) ? local : process.env.npm_config_node_gyp
  if (!gyp || !fs.existsSync(gyp)) return 'node-gyp is not available'
  try {
    // resolved from the project: node-addon-api is a dependency
    await import('node-addon-api')
  } catch {
    return 'node-addon-api is not installed'
  }
  // Node's headers installed with node itself, so that nothing is downloaded
  const args = [gyp, 'rebuild']
  const nodeDir = path.resolve(path.dirname(process.execPath), '..')
  if (fs.existsSync(path.join(nodeDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodeDir}`)
  return args
}

const command = await gypCommand()
for (const addon of ADDONS) {
  const why = typeof command === 'string' ? command : addon.prerequisite()
  if (why !== undefined) {
    console.log(`${addon.dir} addon not built: ${why} (${addon.missing})`)
    continue
  }
  const run = spawnSync(process.execPath, command, { cwd: path.join(root, 'native', addon.dir), stdio: 'inherit' })
  if (run.status !== 0) console.log(`${addon.dir} addon not built: node-gyp failed with status ${run.status} (${addon.missing})`)
  else console.log(`${addon.dir} addon built: native/${addon.dir}/build/Release/${addon.output}`)
}
