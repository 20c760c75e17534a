// Sheep's connections to other sheep (sheep/peer-conns.ts, the original's sockfd cache) against
// two in-process listeners standing for one node's main and I/O addresses: requests go to the
// I/O address of a node that announces one; when that address refuses connections they go to
// the main address with "fallback to non-io connection" in the log; the monitor switches back
// once the I/O address accepts again; a node without an I/O NIC is reached on its main address.
import net from 'node:net'
import { Writable } from 'node:stream'
import { type Logger, pino } from 'pino'
import t from 'tap'
import { decodeRequestHeader, encodeResponseHeader } from '../../lib/codec.js'
import { addrFromIPv4, SD_ADDR_LEN } from '../../lib/addr.js'
import { SD_HEADER_SIZE, SD_OP_GET_NODE_LIST, SD_RES_SUCCESS } from '../../lib/proto.js'
import type { NodeId } from '../../lib/structs.js'
import { PeerConnections } from '../../sheep/peer-conns.js'

/** The monitor's interval in this test (the daemon's is 5 s). */
const MONITOR_INTERVAL_MS = 50

/** A listener answering every request (no payload) with SUCCESS; counts what it served. */
interface FakeSheep {
  port: number
  served: number
  /** Requests are read but not answered (a path that went dead under open connections). */
  mute: boolean
  /** New connections are refused; open ones stay. */
  stopListening(): void
  close(): Promise<void>
}

async function fakeSheep(port = 0): Promise<FakeSheep> {
  const sockets = new Set<net.Socket>()
  const fake: FakeSheep = { port, served: 0, mute: false, stopListening: () => undefined, close: async () => undefined }
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= SD_HEADER_SIZE) {
        const req = decodeRequestHeader(Buffer.from(pending.subarray(0, SD_HEADER_SIZE)))
        pending = pending.subarray(SD_HEADER_SIZE)
        if (fake.mute) continue
        fake.served++
        socket.write(encodeResponseHeader({ opcode: req.opcode, epoch: 0, id: req.id, dataLength: 0, result: SD_RES_SUCCESS }))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port }, resolve))
  fake.port = (server.address() as net.AddressInfo).port
  fake.stopListening = () => server.close()
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  return fake
}

function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()).msg as string)
      done()
    },
  })
  return { log: pino({ level: 'debug' }, stream) as Logger, lines }
}

function nodeId(mainPort: number, ioPort: number): NodeId {
  const localhost = Buffer.from(addrFromIPv4('127.0.0.1'))
  return { addr: localhost, port: mainPort, ioAddr: ioPort ? localhost : Buffer.alloc(SD_ADDR_LEN), ioPort }
}

const ask = { opcode: SD_OP_GET_NODE_LIST }

t.test('I/O address first, the main address while it refuses, back once it accepts', async (t) => {
  const main = await fakeSheep()
  let io = await fakeSheep()
  const { log, lines } = capturingLogger()
  const peers = new PeerConnections(log, { monitorIntervalMs: MONITOR_INTERVAL_MS })
  t.teardown(async () => {
    peers.closeAll()
    await main.close()
    await io.close()
  })
  const node = nodeId(main.port, io.port)

  for (let i = 0; i < 4; i++) t.equal((await peers.get(node).request(ask)).rsp.result, SD_RES_SUCCESS)
  t.same([io.served, main.served], [4, 0], 'requests go to the I/O address')

  await io.close()
  // a request written before the client saw its socket close fails (it may have been served):
  // that is its caller's to retry; the ones after it never reach a socket to the I/O address
  await new Promise((r) => setTimeout(r, 100))
  for (let i = 0; i < 4; i++) t.equal((await peers.get(node).request(ask)).rsp.result, SD_RES_SUCCESS, 'answered although the I/O address refuses')
  t.same([io.served, main.served], [4, 4], 'the main address served them')
  t.ok(
    lines.some((l) => l.startsWith('fallback to non-io connection: IPv4 ip:127.0.0.1 port:')),
    'the fallback is logged as the original logs it',
  )
  t.equal(lines.filter((l) => l.startsWith('fallback')).length, 1, 'once, however many requests hit it')

  io = await fakeSheep(io.port)
  const back = Date.now()
  while (!lines.some((l) => l.startsWith('I/O channel of')) && Date.now() - back < 5_000) await new Promise((r) => setTimeout(r, 10))
  t.ok(Date.now() - back < 5_000, 'the monitor sees the I/O address accept again')
  t.equal((await peers.get(node).request(ask)).rsp.result, SD_RES_SUCCESS)
  t.same([io.served, main.served], [1, 4], 'requests go to the I/O address again')
})

t.test('open connections to an I/O address that went dead are closed once the monitor cannot reach it', async (t) => {
  const main = await fakeSheep()
  const io = await fakeSheep()
  const { log, lines } = capturingLogger()
  const peers = new PeerConnections(log, { monitorIntervalMs: MONITOR_INTERVAL_MS, perNode: 1 })
  t.teardown(async () => {
    peers.closeAll()
    await main.close()
    await io.close()
  })
  const node = nodeId(main.port, io.port)
  await peers.get(node).request(ask)
  io.mute = true
  io.stopListening()
  const started = Date.now()
  // the request would wait its whole timeout on the open connection (one per node here)
  await t.rejects(peers.get(node).request({ ...ask, timeoutMs: 60_000 }), { name: 'SdTransportError' })
  t.ok(Date.now() - started < 5_000, `failed after ${Date.now() - started} ms, within a few monitor intervals`)
  t.ok(lines.some((l) => l.startsWith('fallback to non-io connection')))
  t.equal((await peers.get(node).request(ask)).rsp.result, SD_RES_SUCCESS, 'the retry goes to the main address')
  t.equal(main.served, 1)
})

t.test('a node without an I/O NIC is reached on its main address; drop closes its connections', async (t) => {
  const main = await fakeSheep()
  const { log, lines } = capturingLogger()
  const peers = new PeerConnections(log, { monitorIntervalMs: MONITOR_INTERVAL_MS })
  t.teardown(async () => {
    peers.closeAll()
    await main.close()
  })
  const node = nodeId(main.port, 0)
  t.same(peers.addressFor(node), { host: '127.0.0.1', port: main.port })
  await peers.get(node).request(ask)
  t.equal(main.served, 1)
  peers.drop(node)
  await peers.get(node).request(ask)
  t.equal(main.served, 2, 'a dropped node is connected again on its next request')
  t.same(lines, [], 'nothing logged')
})

t.test('a node whose I/O address changed (restarted with another -i) is reached on the new one', async (t) => {
  const main = await fakeSheep()
  const ioA = await fakeSheep()
  const ioB = await fakeSheep()
  const { log } = capturingLogger()
  const peers = new PeerConnections(log, { monitorIntervalMs: MONITOR_INTERVAL_MS })
  t.teardown(async () => {
    peers.closeAll()
    await Promise.all([main.close(), ioA.close(), ioB.close()])
  })
  await peers.get(nodeId(main.port, ioA.port)).request(ask)
  await peers.get(nodeId(main.port, ioB.port)).request(ask)
  t.same([main.served, ioA.served, ioB.served], [0, 1, 1])
})
