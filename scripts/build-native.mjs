// Builds the optional native addons at `npm install`/`npm ci` (package.json "install"): today
// the libcpg binding of the corosync cluster driver (native/corosync). Built only when
// corosync's development headers are installed (scripts/install-deps.sh adds them); otherwise
// it says so and leaves the addon absent without failing the install — `sheep -c corosync`
// then explains what is missing, and the other cluster drivers do not need it.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const addonDir = path.join(root, 'native', 'corosync')
const CPG_HEADER = '/usr/include/corosync/cpg.h'

function skip(why) {
  console.log(`corosync binding not built: ${why} (sheep -c corosync will be unavailable)`)
  process.exit(0)
}

if (process.env.SHEEPDOG_SKIP_NATIVE) skip('SHEEPDOG_SKIP_NATIVE is set')
if (!fs.existsSync(CPG_HEADER)) skip(`${CPG_HEADER} is missing (Debian: apt-get install libcpg-dev libcorosync-common-dev)`)

// node-gyp: ours (devDependency), else the one npm runs install scripts with
const local = path.join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
const gyp = fs.existsSync(local) ? local : process.env.npm_config_node_gyp
if (!gyp || !fs.existsSync(gyp)) skip('node-gyp is not available')
try {
  // resolved from the project: node-addon-api is a dependency
  await import('node-addon-api')
} catch {
  skip('node-addon-api is not installed')
}

// Node's headers installed with node itself, so that nothing is downloaded
const args = [gyp, 'rebuild']
const nodeDir = path.resolve(path.dirname(process.execPath), '..')
if (fs.existsSync(path.join(nodeDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodeDir}`)
const run = spawnSync(process.execPath, args, { cwd: addonDir, stdio: 'inherit' })
if (run.status !== 0) skip(`node-gyp failed with status ${run.status}`)
console.log('corosync binding built: native/corosync/build/Release/sheepdog_cpg.node')
