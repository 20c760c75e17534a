// `dog node stat` against a stand-in sheep that answers STAT with the exact frame the original
// cluster sent in the capture (test/helpers/fixture.ts): the output must be the original's, except
// that the Write and Read columns carry writes and reads (the original swapped them without -w).
// Also the failure paths: an unreachable daemon and a STAT the sheep refuses.
import { spawn } from 'node:child_process'
import net from 'node:net'
import t from 'tap'
import { SD_OP_STAT, SD_RES_INVALID_PARMS } from '../../lib/proto.js'
import { exchangesOf, findCommand, loadFixture } from '../helpers/fixture.js'
import { DOG_BIN, dog, freePort, programEnv } from '../../harness/sheep.js'

const fixture = loadFixture()
const REQUEST_HEADER_SIZE = 48
const FLAG_CMD_WRITE = 0x01

interface StandIn {
  port: number
  /** Requests seen, by opcode. */
  opcodes: number[]
  close(): Promise<void>
}

/**
 * A TCP server speaking just enough of the protocol: for each request it sends `answer(opcode)`
 * (a captured 48-byte response header and its payload) with the request's id patched in.
 */
async function startStandIn(answer: (opcode: number) => { header: Buffer; payload: Buffer }): Promise<StandIn> {
  const opcodes: number[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        if (pending.length < REQUEST_HEADER_SIZE) return
        const flags = pending.readUInt16LE(2)
        const payloadLength = flags & FLAG_CMD_WRITE ? pending.readUInt32LE(12) : 0
        if (pending.length < REQUEST_HEADER_SIZE + payloadLength) return
        const opcode = pending[1] as number
        const id = pending.readUInt32LE(8)
        pending = pending.subarray(REQUEST_HEADER_SIZE + payloadLength)
        opcodes.push(opcode)
        const { header, payload } = answer(opcode)
        const response = Buffer.from(header)
        response.writeUInt32LE(id, 8)
        socket.write(Buffer.concat([response, payload]))
      }
    })
    socket.on('error', () => undefined)
  })
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return {
    port,
    opcodes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * Runs dog (which would watch forever) until it has printed `lineCount` lines or `limitMs` passed,
 * then interrupts it; answers its stdout.
 */
function dogUntilLines(args: string[], port: number, lineCount: number, limitMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOG_BIN, [...args, '-p', String(port)], { env: programEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const interrupt = (): void => {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGINT')
    }
    const timer = setTimeout(interrupt, limitMs)
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk)
      if (Buffer.concat(out).toString('utf8').split('\n').length > lineCount) interrupt()
    })
    child.on('error', reject)
    child.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(out).toString('utf8'))
    })
  })
}

/** The capture's STAT exchange. */
function capturedStat(): { header: Buffer; payload: Buffer } {
  const exchange = exchangesOf(findCommand(fixture, 'node', 'stat'), SD_OP_STAT)[0]
  if (exchange?.rsp === undefined) throw new Error('the capture has no STAT response')
  return { header: exchange.rsp.header, payload: exchange.rsp.payload }
}

/** A response header answering `opcode` with `result` and no payload. */
function failureHeader(opcode: number, result: number): Buffer {
  const header = Buffer.alloc(48)
  header[0] = 0x02
  header[1] = opcode
  header.writeUInt32LE(result, 16)
  return header
}

/** The original's output with the 4th and 5th tab-separated fields of every row swapped. */
function withWriteAndReadInPlace(original: string): string {
  return original
    .split('\n')
    .map((line) => {
      if (!/^(Client|Peer)\t/.test(line)) return line
      const fields = line.split('\t')
      ;[fields[3], fields[4]] = [fields[4] as string, fields[3] as string]
      return fields.join('\t')
    })
    .join('\n')
}

t.test('node stat prints the captured counters in the original layout', async (t) => {
  const standIn = await startStandIn(capturedStat)
  t.teardown(() => standIn.close())
  const original = findCommand(fixture, 'node', 'stat').stdout as string
  t.equal(original.split('\n')[0], 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD', 'the capture has the header')

  const r = await dog(['node', 'stat'], { port: standIn.port })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  t.equal(r.stdout, withWriteAndReadInPlace(original), 'the original output with writes under Write and reads under Read')
  t.equal(
    r.stdout,
    'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\n' +
      'Client\t0\t78\t17\t59\t0\t0\t74 MB\t132 MB\n' +
      'Peer\t0\t7\t6\t0\t0\t0\t30 MB\t0.0 MB\n',
  )
  t.same(standIn.opcodes, [SD_OP_STAT], 'one STAT request, no node list')

  const raw = await dog(['node', 'stat', '-r'], { port: standIn.port })
  t.equal(raw.status, 0, raw.stderr)
  t.equal(raw.stdout, '0\t78\t17\t59\t0\t0\t77689256\t138679448\n0\t7\t6\t0\t0\t0\t31466656\t0\n', 'raw: no header and no row names, sizes in bytes')
})

t.test('node stat -w reports every second with bandwidth and request deltas', async (t) => {
  const standIn = await startStandIn(capturedStat)
  t.teardown(() => standIn.close())
  const started = Date.now()
  const rawReports = await dogUntilLines(['node', 'stat', '-w', '-r'], standIn.port, 4)
  const lines = rawReports.split('\n').filter((line) => line !== '')
  t.ok(lines.length >= 4, `two reports (${lines.length} lines)`)
  t.ok(Date.now() - started >= 1000, 'a second apart')
  t.equal(lines[0], '0\t78\t17\t59\t0\t0\t77689256\t138679448\t0\t0\t0', 'client row: the same counters plus zero deltas')
  t.equal(lines[1], '0\t7\t6\t0\t0\t0\t31466656\t0\t0\t0\t0', 'peer row')
  t.same(lines.slice(2, 4), lines.slice(0, 2), 'the second report: nothing changed')

  const aligned = await dogUntilLines(['node', 'stat', '-w'], standIn.port, 3)
  t.equal(
    aligned.split('\n').slice(0, 3).join('\n'),
    'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\tWRBW\tRDBW\tRPS\n' +
      'Client\t0\t78\t17\t59\t0\t0\t74 MB\t132 MB\t0.0 MB\t0.0 MB\t0\n' +
      'Peer\t0\t7\t6\t0\t0\t0\t30 MB\t0.0 MB\t0.0 MB\t0.0 MB\t0',
    'each report repeats the header',
  )
})

t.test('node stat failures', async (t) => {
  const refusing = await startStandIn((opcode) => ({ header: failureHeader(opcode, SD_RES_INVALID_PARMS), payload: Buffer.alloc(0) }))
  t.teardown(() => refusing.close())
  const refused = await dog(['node', 'stat'], { port: refusing.port })
  t.equal(refused.status, 1)
  t.equal(refused.stdout, '')
  t.equal(refused.stderr, 'failed to get stat information: Invalid parameters\n')

  const closedPort = await freePort()
  const unreachable = await dog(['node', 'stat'], { port: closedPort })
  t.equal(unreachable.status, 2)
  t.equal(unreachable.stderr, `failed to connect to 127.0.0.1:${closedPort}: Connection refused\n`)
})
