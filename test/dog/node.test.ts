// Tests for dog/node.ts through runDog with a fake runtime whose connection records the requests
// and answers them: the arguments of `node recovery set-throttle` and `node vnodes set` read as
// the original reads them (strtol, str_to_u16), misuses reported with one line and exit 64 and
// no usage (the original's exit(EXIT_USAGE)), and `node md info/plug/unplug` (rows, -r, -A,
// failures). The original's lines are those of its tests 107 and 111.
import t from 'tap'

import type { SheepConnection } from '../../lib/client.js'
import { type RequestInit, decodeRequestHeader, encodeRequestHeader, encodeResponseHeader, decodeResponseHeader } from '../../lib/codec.js'
import { readFields, writeFields } from '../../lib/layout.js'
import {
  SD_OP_MD_INFO,
  SD_OP_MD_PLUG,
  SD_OP_MD_UNPLUG,
  SD_OP_SET_RECOVERY,
  SD_OP_SET_VNODES,
  SD_RES_INVALID_PARMS,
  SD_RES_SUCCESS,
  SD_RES_UNKNOWN,
} from '../../lib/proto.js'
import { MD_INFO_ENTRY, MD_INFO_ENTRY_SIZE, MD_INFO_NR_AT, MD_INFO_SIZE } from '../../lib/sheep-api.js'
import { RECOVERY_THROTTLING, type SdNode, addrFromText } from '../../lib/structs.js'
import { nodeCommand } from '../../dog/node.js'
import { runDog } from '../../dog/runner.js'
import type { DogRuntime } from '../../dog/runtime.js'

interface SentRequest {
  opcode: number
  data: Buffer | undefined
  readLength: number
}

/** A connection that records each request and answers with `answer`'s result and payload. */
function fakeConnection(sent: SentRequest[], answer: (req: SentRequest) => { result: number; data?: Buffer }): SheepConnection {
  return {
    request: async (opts: RequestInit & { data?: Buffer; readLength?: number }) => {
      const header = decodeRequestHeader(encodeRequestHeader({ ...opts, dataLength: opts.data?.length ?? opts.readLength ?? 0, id: 1 }))
      const req = { opcode: header.opcode, data: opts.data, readLength: opts.readLength ?? 0 }
      sent.push(req)
      const { result, data } = answer(req)
      const rsp = decodeResponseHeader(encodeResponseHeader({ opcode: req.opcode, epoch: 1, id: 1, dataLength: data?.length ?? 0, result }))
      return { rsp, data: data ?? Buffer.alloc(0) }
    },
  } as unknown as SheepConnection
}

function node(port: number): SdNode {
  return { addr: addrFromText('127.0.0.1') as Buffer, port, nrVnodes: 128, zone: port, space: 0n } as unknown as SdNode
}

const NODES = [node(7000), node(7001)]

/** An MD_INFO payload with the given disks. */
function mdInfoPayload(disks: Array<{ free: bigint; used: bigint; path: string }>): Buffer {
  const buf = Buffer.alloc(MD_INFO_SIZE)
  disks.forEach((disk, idx) => {
    writeFields(buf, MD_INFO_ENTRY, { idx, ...disk }, idx * MD_INFO_ENTRY_SIZE)
  })
  buf.writeInt32LE(disks.length, MD_INFO_NR_AT)
  return buf
}

async function run(argv: string[], answer: (req: SentRequest) => { result: number; data?: Buffer } = () => ({ result: SD_RES_SUCCESS }), input?: string) {
  const sent: SentRequest[] = []
  const conn = fakeConnection(sent, answer)
  const runtime: DogRuntime = {
    daemon: () => conn,
    bulkDaemon: () => conn,
    connectionTo: () => conn,
    nodeList: () => ({ nodes: NODES, epoch: 1, zoneCount: 2, clusterFlags: 0 }),
    unsupported: async () => 1,
  }
  let stdout = ''
  let stderr = ''
  const stdin = input === undefined ? undefined : (await import('node:stream')).Readable.from([Buffer.from(input)])
  const status = await runDog(argv, [nodeCommand(runtime)], {
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
    env: {},
    stdin,
  })
  return { status, stdout, stderr, sent }
}

t.test('node recovery set-throttle reads its two arguments as the original does', async (t) => {
  const ok = await run(['node', 'recovery', 'set-throttle', '4294967295', '9223372036854775807'])
  t.same([ok.status, ok.stdout, ok.stderr], [0, '', ''])
  t.equal(ok.sent.length, 1)
  t.equal(ok.sent[0]?.opcode, SD_OP_SET_RECOVERY)
  const throttle = readFields(ok.sent[0]?.data as Buffer, RECOVERY_THROTTLING)
  t.same([throttle.maxExecCount, throttle.queueWorkInterval, throttle.throttling], [4294967295, 9223372036854775807n, 1])

  const lenient = await run(['node', 'recovery', 'set-throttle', ' +5', '10'])
  t.equal(lenient.status, 0, 'strtol: leading space and a sign are fine')
  t.equal(readFields(lenient.sent[0]?.data as Buffer, RECOVERY_THROTTLING).maxExecCount, 5)
  const dashes = await run(['node', 'recovery', 'set-throttle', '--', '0', '0'])
  t.same([dashes.status, dashes.stderr], [0, ''], 'after --, as the original test 107 passes them')
})

t.test('set-throttle misuses: one line, exit 64, no usage (test 107)', async (t) => {
  const cases: Array<[string[], string]> = [
    [['0', '1'], 'Invalid interval max (0), interval (1)'],
    [['0', '-1'], 'Invalid interval (-1)'],
    [['1', '0'], 'Invalid interval max (1), interval (0)'],
    [['-1', '1'], 'Invalid max (-1)'],
    [['-2', '-2'], 'Invalid max (-2)'],
    [['4294967295', '9223372036854775808'], 'Invalid interval (9223372036854775808)'],
    [['4294967296', '9223372036854775807'], 'Invalid max (4294967296)'],
    [['5x', '1'], 'Invalid max (5x)'],
    [['5'], 'Invalid interval max (5), interval ((null))'],
  ]
  for (const [args, line] of cases) {
    const r = await run(['node', 'recovery', 'set-throttle', '--', ...args])
    t.same([r.status, r.stdout, r.stderr, r.sent.length], [64, '', `${line}\n`, 0], args.join(' '))
  }
  const none = await run(['node', 'recovery', 'set-throttle'])
  t.equal(none.status, 64, 'no argument at all: the usage')
  t.match(none.stdout, /^Usage: dog node recovery set-throttle /)
})

t.test('node vnodes set reads its argument as str_to_u16 does (test 111)', async (t) => {
  for (const value of ['1', '65535', ' 42', '+42']) {
    const r = await run(['node', 'vnodes', 'set', '--', value])
    t.same([r.status, r.stdout, r.stderr], [0, '', ''], `'${value}' is accepted`)
    t.equal(r.sent[0]?.opcode, SD_OP_SET_VNODES)
    t.equal(r.sent[0]?.data?.readInt32LE(0), Number(value))
  }
  for (const value of ['0', '65536', '65537', '4294967297', '-1', 'a', '42a', '+', '-']) {
    const r = await run(['node', 'vnodes', 'set', '--', value])
    t.same(
      [r.status, r.stdout, r.stderr, r.sent.length],
      [64, '', `Invalid number of vnodes '${value}': must be an integer between 1 and 65535\n`, 0],
      `'${value}' is refused`,
    )
  }
  const refused = await run(['node', 'vnodes', 'set', '42'], () => ({ result: SD_RES_INVALID_PARMS }))
  t.same([refused.status, refused.stderr], [1, 'Failed to execute request\n'])
})

t.test('node md info prints the disks of the contacted node, or of every node with -A', async (t) => {
  const payload = mdInfoPayload([{ free: 3n * 1024n ** 3n, used: 1024n ** 3n, path: '/var/lib/sheepdog/obj' }])
  const answer = (req: SentRequest) => ({ result: SD_RES_SUCCESS, data: req.opcode === SD_OP_MD_INFO ? payload : undefined })
  const info = await run(['node', 'md', 'info'], answer)
  t.same([info.status, info.stderr], [0, ''])
  t.equal(info.stdout, 'Id\tSize\tUsed\tAvail\tUse%\tPath\n 0\t4.0 GB\t1.0 GB\t3.0 GB\t 25%\t/var/lib/sheepdog/obj\n')
  t.equal(info.sent[0]?.readLength, MD_INFO_SIZE, 'asks for the whole sd_md_info')
  const raw = await run(['node', 'md', 'info', '-r', '-p', '7001'], answer)
  t.equal(raw.stdout, '127.0.0.1:7001 0 4294967296 1073741824 3221225472 25% /var/lib/sheepdog/obj\n')
  const all = await run(['node', 'md', 'info', '-A'], answer)
  t.equal(
    all.stdout,
    'Id\tSize\tUsed\tAvail\tUse%\tPath\nNode 0:\n 0\t4.0 GB\t1.0 GB\t3.0 GB\t 25%\t/var/lib/sheepdog/obj\n' +
      'Node 1:\n 0\t4.0 GB\t1.0 GB\t3.0 GB\t 25%\t/var/lib/sheepdog/obj\n',
  )
  const failed = await run(['node', 'md', 'info'], () => ({ result: SD_RES_INVALID_PARMS }))
  t.same([failed.status, failed.stderr], [1, 'failed to get multi-disk information: Invalid parameters\n'])
})

t.test('node md plug and unplug: the caution, the paths, the failure line', async (t) => {
  const declined = await run(['node', 'md', 'plug', '/d1,/d2'], undefined, 'no\n')
  t.same([declined.status, declined.sent.length], [0, 0], 'declined: nothing sent')
  t.match(declined.stdout, /Caution! The directories to be plugged will be purged\.\n\(\/_\)_\|_ {2}Are you sure you want to continue\? \[yes\/no\]: $/)
  const plugged = await run(['node', 'md', 'plug', '-f', '/d1,/d2'])
  t.same([plugged.status, plugged.stdout, plugged.stderr], [0, '', ''])
  t.equal(plugged.sent[0]?.opcode, SD_OP_MD_PLUG)
  t.equal(plugged.sent[0]?.data?.toString(), '/d1,/d2\0', 'the paths, NUL-terminated')
  const refused = await run(['node', 'md', 'unplug', '-f', '/d1'], () => ({ result: SD_RES_UNKNOWN }))
  t.equal(refused.sent[0]?.opcode, SD_OP_MD_UNPLUG)
  t.same([refused.status, refused.stderr], [1, 'Failed to execute request, look for sheep.log for more information\n'])
  const unplugAsked = await run(['node', 'md', 'unplug', '/d1'], undefined, 'yes\n')
  t.match(unplugAsked.stdout, /Caution! Recovery will be triggered after unplugging\./)
  t.equal(unplugAsked.sent.length, 1, 'yes: sent')
})
