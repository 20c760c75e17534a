// `--admin-from`: the networks parse (CIDR or a single address, IPv4 or IPv6, several at once),
// bad ones are refused with a reason and sheep's option parsing fails with it, and the check
// matches addresses as a dual-stack listener reports them.
import t from 'tap'
import { adminAllowed, parseAdminNetworks } from '../../sheep/admin-access.js'
import { parseSheepArgs } from '../../sheep/options.js'

t.test('networks parse and match', async (t) => {
  const nets = parseAdminNetworks('127.0.0.0/8, 10.0.0.0/24,192.168.1.7,fd00::/8')
  if (typeof nets === 'string') throw new Error(nets)
  t.equal(nets.text, '127.0.0.0/8,10.0.0.0/24,192.168.1.7/32,fd00::/8')
  const cases: Array<[string, boolean]> = [
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.200', true],
    ['10.0.1.1', false],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['fd12::1', true],
    ['fe80::1', false],
    ['', false],
  ]
  for (const [address, allowed] of cases) t.equal(adminAllowed(nets, address), allowed, `${address || '(unknown)'}: ${allowed}`)
  t.equal(adminAllowed(undefined, '203.0.113.9'), true, 'without the option everyone may')
})

t.test('bad networks are refused with a reason', async (t) => {
  for (const bad of ['', ',', '10.0.0.0/33', 'fd00::/129', 'example.com', '10.0.0.0/x', '10.0.0/8']) {
    const r = parseAdminNetworks(bad)
    t.type(r, 'string', `${JSON.stringify(bad)}: ${String(r)}`)
  }
})

t.test('sheep -A / --admin-from', async (t) => {
  const ok = parseSheepArgs(['--admin-from', '127.0.0.1', '/tmp/x'])
  t.ok(ok.kind === 'run' && ok.options.adminFrom?.text === '127.0.0.1/32', 'a single address')
  const short = parseSheepArgs(['-A', '10.0.0.0/24,127.0.0.0/8', '/tmp/x'])
  t.ok(short.kind === 'run' && short.options.adminFrom?.text === '10.0.0.0/24,127.0.0.0/8', 'the short option, two networks')
  const none = parseSheepArgs(['/tmp/x'])
  t.ok(none.kind === 'run' && none.options.adminFrom === undefined, 'absent by default')
  const bad = parseSheepArgs(['--admin-from', '10.0.0.0/40', '/tmp/x'])
  t.ok(bad.kind === 'exit' && bad.code === 1 && /prefix length/.test(bad.stderr ?? ''), 'a bad one exits 1 with the reason')
})

t.test('the op table marks the cluster-wide and destructive ops admin, and only those', async (t) => {
  const { OPS } = await import('../../sheep/ops.js')
  const proto = await import('../../lib/proto.js')
  const admin = new Set([...OPS].filter(([, op]) => op.admin === true).map(([opcode]) => proto.opcodeName(opcode)))
  for (const name of [
    'MAKE_FS',
    'SHUTDOWN',
    'KILL_NODE',
    'FORCE_RECOVER',
    'ENABLE_RECOVER',
    'DISABLE_RECOVER',
    'DEL_VDI',
    'ALTER_VDI_COPY',
    'ALTER_CLUSTER_COPY',
    'REWEIGHT',
    'MD_PLUG',
    'MD_UNPLUG',
    'SET_VNODES',
    'NOTIFY_VDI_ADD',
  ]) {
    t.ok(admin.has(`SD_OP_${name}`) || admin.has(name), `${name} is admin`)
  }
  for (const name of [
    'READ_OBJ',
    'WRITE_OBJ',
    'CREATE_AND_WRITE_OBJ',
    'READ_PEER',
    'WRITE_PEER',
    'NEW_VDI',
    'LOCK_VDI',
    'RELEASE_VDI',
    'GET_VDI_INFO',
    'READ_VDIS',
    'GET_NODE_LIST',
    'STAT_CLUSTER',
    'GET_OBJ_LIST',
    'GET_EPOCH',
  ]) {
    t.notOk(admin.has(`SD_OP_${name}`) || admin.has(name), `${name} is not`)
  }
})
