// lib/client.ts, RequestOptions.sendAtOnce: a request the sheep has nothing to batch with is
// handed to the kernel by the call that makes it, not at the end of the event loop's turn, and
// frames sent either way reach the server whole (the protocol matches replies by id, so a frame
// sent at once may overtake the turn's batch). A real TCP server on 127.0.0.1 stands in for a
// sheep: it answers every request with SUCCESS and records what arrived, in order.
import net from 'node:net'
import t, { type Test } from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { decodeRequestHeader, encodeResponseHeader } from '../../lib/codec.js'
import { SD_HEADER_SIZE, SD_OP_WRITE_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'

interface Seen {
  id: number
  payload: string
}

/** A server that answers each request and records them, in the order they arrived. */
async function answeringServer(t: Test): Promise<{ port: number; seen: Seen[]; arrived: (n: number) => Promise<void> }> {
  const seen: Seen[] = []
  const waiters: Array<() => void> = []
  const server = net.createServer((socket) => {
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= SD_HEADER_SIZE) {
        const req = decodeRequestHeader(pending.subarray(0, SD_HEADER_SIZE))
        if (pending.length < SD_HEADER_SIZE + req.dataLength) break
        const payload = pending.subarray(SD_HEADER_SIZE, SD_HEADER_SIZE + req.dataLength).toString()
        pending = pending.subarray(SD_HEADER_SIZE + req.dataLength)
        seen.push({ id: req.id, payload })
        for (const w of waiters.splice(0)) w()
        socket.write(encodeResponseHeader({ opcode: req.opcode, epoch: 0, id: req.id, dataLength: 0, result: SD_RES_SUCCESS }))
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const arrived = async (n: number) => {
    while (seen.length < n) await new Promise<void>((r) => waiters.push(r))
  }
  return { port: (server.address() as net.AddressInfo).port, seen, arrived }
}

const write = (conn: SheepConnection, text: string, sendAtOnce: boolean) => conn.request({ opcode: SD_OP_WRITE_OBJ, data: Buffer.from(text), sendAtOnce })

/** The connection's socket, to see where its bytes are (white box: the field is private). */
const socketOf = (conn: SheepConnection) => (conn as unknown as { socket: net.Socket }).socket

t.test('a request sent at once is handed to the kernel before the call returns', async (t) => {
  const { port, seen, arrived } = await answeringServer(t)
  const conn = new SheepConnection({ host: '127.0.0.1', port })
  t.teardown(() => conn.close())
  await write(conn, 'connect', false)
  const socket = socketOf(conn)
  const before = socket.bytesWritten
  const atOnce = write(conn, 'at once', true)
  t.equal(socket.bytesWritten - before, SD_HEADER_SIZE + 'at once'.length, 'header and payload written by the call')
  t.equal(socket.writableLength, 0, 'nothing left waiting in the stream')
  await atOnce
  // the other way: queued after a microtask, held in the stream until the turn ends
  const batched = write(conn, 'batched', false)
  await Promise.resolve()
  t.equal(socket.writableLength, SD_HEADER_SIZE + 'batched'.length, 'a batched frame waits for the end of the turn')
  t.equal((await batched).rsp.result, SD_RES_SUCCESS)
  await arrived(3)
  t.same(
    seen.map((s) => s.payload),
    ['connect', 'at once', 'batched'],
  )
})

t.test('frames sent at once and with the turn all arrive whole; those sent at once overtake the turn’s batch', async (t) => {
  const { port, seen, arrived } = await answeringServer(t)
  const conn = new SheepConnection({ host: '127.0.0.1', port })
  t.teardown(() => conn.close())
  await write(conn, 'connect', false)
  const texts = ['batched 1', 'at once 1', 'batched 2', 'at once 2', 'batched 3']
  const replies = texts.map((text) => write(conn, text, text.startsWith('at once')))
  for (const r of await Promise.all(replies)) t.equal(r.rsp.result, SD_RES_SUCCESS)
  await arrived(1 + texts.length)
  const ids = seen.slice(1).map((s) => s.id)
  t.same(
    seen.slice(1).map((s) => s.payload),
    texts.filter((x) => x.startsWith('at once')).concat(texts.filter((x) => !x.startsWith('at once'))),
    'those sent at once leave first; the batch follows at the end of the turn, in order',
  )
  t.equal(new Set(ids).size, texts.length, 'every frame whole, each with its own id')
})
