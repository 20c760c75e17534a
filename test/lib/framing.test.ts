// FrameReader: a byte stream of 48-byte headers and payloads is cut into exactly the frames sent,
// whether it arrives through push() in chunks of any size or is read in place through
// nextReadBuffer()/received() as the client's socket does (payload rests land straight in the
// payload buffer), or a mix of both; a refused header stops the reader.
import crypto from 'node:crypto'
import t, { type Test } from 'tap'
import { FrameReader, decodedOncePerFrame } from '../../lib/framing.js'
import { SD_HEADER_SIZE } from '../../lib/proto.js'

interface Frame {
  header: Buffer
  payload: Buffer
}

/** Frames whose header says its payload length in bytes 0..3 (as data_length does at 44). */
function makeFrames(count: number, maxPayload: number): Frame[] {
  return Array.from({ length: count }, () => {
    const payload = crypto.randomBytes(crypto.randomInt(4) === 0 ? 0 : crypto.randomInt(maxPayload + 1))
    const header = crypto.randomBytes(SD_HEADER_SIZE)
    header.writeUInt32LE(payload.length, 0)
    return { header, payload }
  })
}

function collector(): { reader: FrameReader; got: Frame[]; errors: string[] } {
  const got: Frame[] = []
  const errors: string[] = []
  const reader = new FrameReader({
    payloadLength: (header) => header.readUInt32LE(0),
    onFrame: (header, payload) => got.push({ header: Buffer.from(header), payload: Buffer.from(payload ?? Buffer.alloc(0)) }),
    onProtocolError: (reason) => errors.push(reason),
  })
  return { reader, got, errors }
}

function sameFrames(t: Test, got: Frame[], sent: Frame[], what: string): void {
  const ok = got.length === sent.length && got.every((f, i) => f.header.equals(sent[i]!.header) && f.payload.equals(sent[i]!.payload))
  t.ok(ok, `${what}: ${got.length} of ${sent.length} frames, byte for byte`)
}

t.test('push() in random chunks', async (t) => {
  const sent = makeFrames(200, 300_000)
  const stream = Buffer.concat(sent.flatMap((f) => [f.header, f.payload]))
  const { reader, got, errors } = collector()
  for (let at = 0; at < stream.length; ) {
    const n = Math.min(stream.length - at, 1 + crypto.randomInt(100_000))
    reader.push(stream.subarray(at, at + n))
    at += n
  }
  sameFrames(t, got, sent, 'pushed')
  t.same(errors, [])
  t.ok(reader.idle)
})

t.test('reads in place, as a socket with onread does', async (t) => {
  const sent = makeFrames(200, 5 * 1024 * 1024)
  const stream = Buffer.concat(sent.flatMap((f) => [f.header, f.payload]))
  const { reader, got, errors } = collector()
  const scratch = Buffer.alloc(64 * 1024)
  let inPlace = 0
  for (let at = 0; at < stream.length; ) {
    // the "kernel" fills at most the buffer handed out, and often less
    const target = reader.nextReadBuffer(scratch)
    if (target !== scratch) inPlace++
    const n = Math.min(target.length, stream.length - at, 1 + crypto.randomInt(crypto.randomInt(2) === 0 ? 1000 : 2_000_000))
    stream.copy(target, 0, at, at + n)
    reader.received(target, n)
    at += n
  }
  sameFrames(t, got, sent, 'read in place')
  t.ok(inPlace > 0, 'payload rests were read straight into their buffers')
  t.same(errors, [])
  t.ok(reader.idle)
})

t.test('push() and in-place reads mixed', async (t) => {
  const sent = makeFrames(100, 1_000_000)
  const stream = Buffer.concat(sent.flatMap((f) => [f.header, f.payload]))
  const { reader, got } = collector()
  const scratch = Buffer.alloc(4096)
  for (let at = 0; at < stream.length; ) {
    if (crypto.randomInt(2) === 0) {
      const n = Math.min(stream.length - at, 1 + crypto.randomInt(50_000))
      reader.push(stream.subarray(at, at + n))
      at += n
    } else {
      const target = reader.nextReadBuffer(scratch)
      const n = Math.min(target.length, stream.length - at, 1 + crypto.randomInt(50_000))
      stream.copy(target, 0, at, at + n)
      reader.received(target, n)
      at += n
    }
  }
  sameFrames(t, got, sent, 'mixed')
})

t.test('a refused header stops the reader', async (t) => {
  const errors: string[] = []
  const got: Buffer[] = []
  const reader = new FrameReader({
    payloadLength: (header) => (header[0] === 0xff ? 'too long' : 0),
    onFrame: (header) => got.push(header),
    onProtocolError: (reason) => errors.push(reason),
  })
  const good = Buffer.alloc(SD_HEADER_SIZE)
  const bad = Buffer.alloc(SD_HEADER_SIZE, 0xff)
  const scratch = Buffer.alloc(1024)
  const target = reader.nextReadBuffer(scratch)
  const stream = Buffer.concat([good, bad, good])
  stream.copy(target)
  reader.received(target, stream.length)
  t.equal(got.length, 1, 'the frame before it')
  t.same(errors, ['too long'])
  reader.push(good)
  t.equal(got.length, 1, 'nothing after it')
  t.equal(reader.nextReadBuffer(scratch), scratch, 'later reads land in the scratch buffer and are ignored')
})

t.test('a payload lands in the buffer the sink brings for it', async (t) => {
  const brought = Buffer.alloc(1_000_000)
  const got: Buffer[] = []
  const reader = new FrameReader({
    payloadLength: (header) => header.readUInt32LE(0),
    payloadBuffer: (_header, length) => (length <= brought.length ? brought.subarray(0, length) : undefined),
    onFrame: (_header, payload) => got.push(payload ?? Buffer.alloc(0)),
    onProtocolError: (reason) => t.fail(reason),
  })
  const sent = makeFrames(20, 1_500_000).filter((f) => f.payload.length > 0)
  const scratch = Buffer.alloc(4096)
  for (const f of sent) {
    const stream = Buffer.concat([f.header, f.payload])
    for (let at = 0; at < stream.length; ) {
      const target = reader.nextReadBuffer(scratch)
      const n = Math.min(target.length, stream.length - at, 1 + crypto.randomInt(300_000))
      stream.copy(target, 0, at, at + n)
      reader.received(target, n)
      at += n
    }
    const payload = got.at(-1)!
    t.ok(payload.equals(f.payload), `a payload of ${f.payload.length} bytes arrives whole`)
    t.equal(payload.buffer === brought.buffer, f.payload.length <= brought.length, 'in the brought buffer exactly when it fits')
  }
})

t.test('a reader with a payload step grows the payload as it arrives and cuts the same frames', async (t) => {
  const got: Frame[] = []
  const step = 1000
  const reader = new FrameReader(
    {
      payloadLength: (header) => header.readUInt32LE(0),
      onFrame: (header, payload) => got.push({ header: Buffer.from(header), payload: Buffer.from(payload ?? Buffer.alloc(0)) }),
      onProtocolError: (reason) => t.fail(reason),
    },
    { payloadStepBytes: step },
  )
  const sent = makeFrames(40, 300_000)
  const stream = Buffer.concat(sent.flatMap((f) => [f.header, f.payload]))
  for (let at = 0; at < stream.length; ) {
    const n = Math.min(stream.length - at, 1 + crypto.randomInt(70_000))
    reader.push(stream.subarray(at, at + n))
    at += n
  }
  sameFrames(t, got, sent, 'stepped payloads')

  // a header announcing 64 MiB followed by a few bytes holds those bytes, not 64 MiB
  const header = Buffer.alloc(SD_HEADER_SIZE)
  header.writeUInt32LE(64 * 1024 * 1024, 0)
  reader.push(Buffer.concat([header, Buffer.alloc(10)]))
  t.equal(reader.pendingBytes, SD_HEADER_SIZE + 10, 'pending bytes are what came')
  const scratch = Buffer.alloc(16)
  t.equal(reader.nextReadBuffer(scratch), scratch, 'a stepped payload not at its full length is not read in place')
})

t.test('abandon() hands back the payload being read and stops the reader', async (t) => {
  const brought = Buffer.alloc(100_000)
  const got: Buffer[] = []
  const reader = new FrameReader(
    {
      payloadLength: (header) => header.readUInt32LE(0),
      payloadBuffer: (_header, length) => brought.subarray(0, length),
      onFrame: (_header, payload) => got.push(payload ?? Buffer.alloc(0)),
      onProtocolError: (reason) => t.fail(reason),
    },
    { payloadStepBytes: 1000 },
  )
  const header = Buffer.alloc(SD_HEADER_SIZE)
  header.writeUInt32LE(50_000, 0)
  reader.push(Buffer.concat([header, Buffer.alloc(10)]))
  t.equal(reader.nextReadBuffer(Buffer.alloc(16)).buffer, brought.buffer, 'a stepped reader reads in place into a buffer the sink brought')
  const partial = reader.abandon()
  t.equal(partial?.buffer, brought.buffer, 'the buffer the sink brought comes back')
  t.equal(partial?.length, 50_000, 'at its full length')
  t.equal(reader.abandon(), undefined, 'once')
  reader.push(Buffer.alloc(60_000))
  t.equal(got.length, 0, 'nothing is read after it')
})

t.test('decodedOncePerFrame: a header handed to every callback of the sink is decoded once per frame', async (t) => {
  const decoded: Buffer[] = []
  const idOf = decodedOncePerFrame((header) => {
    decoded.push(header)
    return header.readUInt32LE(8)
  })
  const seen: number[] = []
  const reader = new FrameReader({
    payloadLength: (header) => {
      seen.push(idOf(header))
      return 4
    },
    payloadBuffer: (header) => {
      seen.push(idOf(header))
      return undefined
    },
    onFrame: (header) => {
      seen.push(idOf(header))
    },
    onProtocolError: (reason) => t.fail(reason),
  })
  const frame = (id: number): Buffer => {
    const header = Buffer.alloc(SD_HEADER_SIZE)
    header.writeUInt32LE(id, 8)
    return Buffer.concat([header, Buffer.alloc(4, id)])
  }
  // two frames with equal header bytes are still two frames: each is decoded once
  reader.push(Buffer.concat([frame(7), frame(7), frame(9)]))
  t.same(seen, [7, 7, 7, 7, 7, 7, 9, 9, 9], 'every callback got its frame')
  t.equal(decoded.length, 3, 'one decode per frame')
})
