// The files shipped for running sheep as a service (contrib/): the systemd units pass
// `systemd-analyze verify` (as instances, the way systemctl loads them), and the logrotate
// snippet's postrotate script is valid sh that signals only what the lock files name.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'

const CONTRIB = path.join(import.meta.dirname, '..', 'contrib')
const UNITS = ['sheep@.service', 'sheepfs@.service']

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0

t.test('systemd units verify as instances', { skip: hasAnalyze ? false : 'no systemd-analyze here' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'units-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const instances = UNITS.map((unit) => {
    const instance = path.join(dir, unit.replace('@.', '@main.'))
    fs.copyFileSync(path.join(CONTRIB, 'systemd', unit), instance)
    return instance
  })
  // --man=no: the man pages are only installed with the package
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...instances], { encoding: 'utf8' })
  t.equal(r.status, 0, 'systemd-analyze verify passes')
  t.equal(r.stderr.trim(), '', `and says nothing: ${r.stderr.trim()}`)
})

t.test('the sheep unit is what the issue asks for', async (t) => {
  const unit = fs.readFileSync(path.join(CONTRIB, 'systemd', 'sheep@.service'), 'utf8')
  t.match(unit, /^Type=notify$/m, 'readiness by sd_notify')
  t.match(unit, /^ExecStart=.*sheep -f /m, 'sheep in the foreground')
  t.match(unit, /^EnvironmentFile=\/etc\/sheepdog\/%i\.conf$/m, 'options from /etc/sheepdog/INSTANCE.conf')
  t.match(unit, /^Wants=.*corosync\.service zookeeper\.service$/m, 'wants, not requires, the cluster driver')
  t.notMatch(unit, /^Requires=/m)
  t.match(unit, /^After=network-online\.target/m, 'after the network is up')
  t.match(unit, /^Restart=on-failure$/m)
  t.match(unit, /^LimitNOFILE=\d+$/m)
})

t.test('logrotate: postrotate is sh and sends SIGHUP to the pid in a lock file', async (t) => {
  const snippet = fs.readFileSync(path.join(CONTRIB, 'logrotate', 'sheepdog'), 'utf8')
  t.notMatch(snippet, /^\s*copytruncate/m, 'not copytruncate')
  const script = /postrotate\n([\s\S]*?)\n\s*endscript/.exec(snippet)?.[1]
  t.ok(script, 'has a postrotate script')
  execFileSync('sh', ['-n', '-c', script as string])
  t.pass('the script parses as sh')
})

t.test('the Grafana dashboard graphs only metrics sheep serves', async (t) => {
  const dashboard = fs.readFileSync(path.join(CONTRIB, 'grafana', 'sheepdog.json'), 'utf8')
  JSON.parse(dashboard)
  const source = fs.readFileSync(path.join(import.meta.dirname, '..', 'sheep', 'metrics.ts'), 'utf8')
  const names = new Set([...dashboard.matchAll(/sheepdog_(\w+)/g)].map((m) => (m[1] as string).replace(/_bucket$/, '')))
  t.ok(names.size >= 10, `the dashboard uses ${names.size} sheepdog_ metrics`)
  // each is declared in sheep/metrics.ts, as METRICS_PREFIX + its name
  for (const name of names) t.ok(source.includes(`}${name}\``) || source.includes(`'${name}'`), `sheepdog_${name} is served`)
  // sheepfs's are sheepfs_volume_ + a name of its table in sheepfs/metrics.ts, or sheepfs_volumes
  const sheepfsSource = fs.readFileSync(path.join(import.meta.dirname, '..', 'sheepfs', 'metrics.ts'), 'utf8')
  for (const m of dashboard.matchAll(/sheepfs_volume_(\w+)/g)) t.ok(sheepfsSource.includes(`'${m[1]}'`), `sheepfs_volume_${m[1]} is served`)
})
