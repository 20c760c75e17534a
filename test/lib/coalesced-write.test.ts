// lib/coalesced-write.ts: the frames written to one socket in one event-loop turn leave
// together, in one writev, once the turn's I/O is done; each socket has its own batch, and the
// payload's `sent` callback comes once the stream took it. writeFrameNow sends a lone frame at
// once, in one writev, after whatever is already waiting on the socket.
import { Writable } from 'node:stream'
import t from 'tap'
import { writeFrame, writeFrameNow } from '../../lib/coalesced-write.js'

const tick = () => new Promise((r) => setImmediate(r))

/** A socket stand-in recording each batch the stream hands down (one writev = one batch). */
function recordingSocket(): { socket: Writable; batches: string[][] } {
  const batches: string[][] = []
  const socket = new Writable({
    writev(chunks, cb) {
      batches.push(chunks.map((c) => String(c.chunk)))
      cb()
    },
    write(chunk, _encoding, cb) {
      batches.push([String(chunk)])
      cb()
    },
  })
  return { socket, batches }
}

t.test("frames of one turn leave together when the turn's I/O is done", async (t) => {
  const { socket, batches } = recordingSocket()
  let sent = 0
  writeFrame(socket, Buffer.from('h1'), Buffer.from('d1'), () => sent++)
  writeFrame(socket, Buffer.from('h2'))
  t.same(batches, [], 'nothing leaves during the turn')
  t.equal(sent, 0, 'the payload is not sent yet')
  await tick()
  t.same(batches, [['h1', 'd1', 'h2']], 'one batch, in order, at the end of the turn')
  t.equal(sent, 1, 'told once the payload is written')
})

t.test('each turn has a batch of its own, and each socket', async (t) => {
  const a = recordingSocket()
  const b = recordingSocket()
  writeFrame(a.socket, Buffer.from('a1'))
  writeFrame(b.socket, Buffer.from('b1'), Buffer.from('b1 data'))
  await tick()
  writeFrame(a.socket, Buffer.from('a2'))
  await tick()
  t.same(a.batches, [['a1'], ['a2']], 'a later turn is a later batch')
  t.same(b.batches, [['b1', 'b1 data']], 'the other socket is batched apart')
})

t.test('an empty payload sends the header alone and calls back at once', async (t) => {
  const { socket, batches } = recordingSocket()
  let sent = 0
  writeFrame(socket, Buffer.from('h'), Buffer.alloc(0), () => sent++)
  t.equal(sent, 1, 'nothing to wait for')
  await tick()
  t.same(batches, [['h']])
})

t.test('a frame sent at once leaves during the turn, header and payload together', async (t) => {
  const { socket, batches } = recordingSocket()
  let sent = 0
  writeFrameNow(socket, Buffer.from('h1'), Buffer.from('d1'), () => sent++)
  t.same(batches, [['h1', 'd1']], 'one batch, before the turn ends')
  await tick()
  t.equal(sent, 1, 'told once the payload is written')
  t.same(batches, [['h1', 'd1']], 'nothing more at the end of the turn')
})

t.test('a frame sent at once waits behind the frames already waiting on the socket', async (t) => {
  const { socket, batches } = recordingSocket()
  writeFrame(socket, Buffer.from('h1'))
  writeFrameNow(socket, Buffer.from('h2'), Buffer.from('d2'))
  t.same(batches, [], 'the turn still holds the socket')
  await tick()
  t.same(batches, [['h1', 'h2', 'd2']], 'in order, in the turn’s batch')
})
