// Seeded wire fuzzers for the fault suite (test/functional/faults/wire-fuzz.test.ts): random and
// mutated Sheepdog request frames against a sheep's client port, and random transmission-phase
// requests against its NBD server. Each connection gets a batch of frames — valid headers with
// random opcodes, flags and lengths (up to 2^32 − 1), templates of real requests mutated a few
// bytes at a time — and may end in a truncated frame or be dropped mid-frame. The sheep side
// checks what a well-behaved server must do whatever it is sent: every complete frame answered
// (or the connection closed), no response with an id never sent, no more payload than the
// request allowed (wire-protocol.md §1.1). One seed decides every frame, so a failure replays.
import net from 'node:net'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_REQUEST_HEADER_BYTES,
  NBD_REQUEST_MAGIC,
} from '../../lib/nbd-proto.js'
import { oidToVid, vidToAttrOid, vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import {
  SD_FLAG_CMD_PIGGYBACK,
  SD_FLAG_CMD_WRITE,
  SD_HEADER_SIZE,
  SD_MAX_DATA_LENGTH,
  SD_MAX_VDI_LEN,
  SD_OP_CLUSTER_INFO,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_DECREF_OBJ,
  SD_OP_DECREF_PEER,
  SD_OP_DISCARD_OBJ,
  SD_OP_EXIST,
  SD_OP_FLUSH_VDI,
  SD_OP_GET_EPOCH,
  SD_OP_GET_HASH,
  SD_OP_GET_NODE_LIST,
  SD_OP_GET_OBJ_LIST,
  SD_OP_GET_VDI_ATTR,
  SD_OP_GET_VDI_COPIES,
  SD_OP_GET_VDI_INFO,
  SD_OP_INODE_COHERENCE,
  SD_OP_LOCK_VDI,
  SD_OP_MD_INFO,
  SD_OP_NEW_VDI,
  SD_OP_OIDS_EXIST,
  SD_OP_READ_DEL_VDIS,
  SD_OP_READ_OBJ,
  SD_OP_READ_PEER,
  SD_OP_READ_VDIS,
  SD_OP_RELEASE_VDI,
  SD_OP_REMOVE_OBJ,
  SD_OP_REMOVE_PEER,
  SD_OP_STAT,
  SD_OP_STAT_CLUSTER,
  SD_OP_STAT_RECOVERY,
  SD_OP_STAT_SHEEP,
  SD_OP_VDI_STATE_CHECKPOINT_CTL,
  SD_OP_WRITE_OBJ,
  SD_OP_WRITE_PEER,
  SD_PROTO_VER,
  SD_SHEEP_PROTO_VER,
} from '../../lib/proto.js'
import { seededRandom } from './random.js'

/** A complete frame's payload is sent only up to this size; a longer one is a truncated frame. */
const FUZZ_MAX_SENT_PAYLOAD_BYTES = 256 * 1024
/** Frames on one connection. */
const FRAMES_PER_CONNECTION: [number, number] = [1, 40]
/** How long every complete frame of a connection may take to be answered. */
const ANSWER_TIMEOUT_MS = 30_000
/** How long a connection that ends in a truncated frame is kept open before it is dropped. */
const TRUNCATED_HOLD_MS: [number, number] = [0, 200]
/** Requests the NBD fuzzer sends on one connection after its handshake. */
const NBD_REQUESTS_PER_CONNECTION: [number, number] = [1, 60]
/** Offsets of the object fields in a request header (lib/codec.ts REQ_OBJ): oid, cow oid, offset. */
const OID_AT = 16
const COW_OID_AT = 24
const OFFSET_AT = 40

/** Seeded random choices. */
export class FuzzRandom {
  private readonly next: () => number
  constructor(readonly seed: number) {
    this.next = seededRandom(seed)
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  between([lo, hi]: [number, number]): number {
    return lo + this.int(hi - lo + 1)
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T
  }
  u32(): number {
    return this.int(0x1_0000_0000)
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32())
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    let word = 0
    for (let i = 0; i < n; i++) {
      if (i % 4 === 0) word = this.u32()
      b[i] = (word >>> (8 * (i % 4))) & 0xff
    }
    return b
  }
}

/** What the fuzzer knows of the cluster: the VDI it may damage and the one it must not touch. */
export interface SheepFuzzTarget {
  port: number
  /** Local address the fuzzer connects from (outside --admin-from, so admin ops are refused). */
  localAddress: string
  /** The node's epoch (peer ops are epoch-checked: the right one gets them past the check). */
  epoch: number
  /** The VDI whose objects the frames aim at. */
  scratchVid: number
  scratchName: string
  /** The VDI that must read back intact: no frame names its vid or its name. */
  protectedVid: number
  protectedName: string
}

/** One frame as sent: its bytes, and what its answer may be. */
interface PlannedFrame {
  bytes: Buffer
  id: number
  opcode: number
  /** The server reads all of it and must answer (or close the connection). */
  complete: boolean
  /**
   * Stamped with an epoch the node has not reached: an epoch-checked op may wait for it up to
   * PEER_EPOCH_WAIT_MS before answering NEW_NODE_VER, so the connection is dropped without
   * waiting for this answer (which checks that a request waiting so leaks nothing).
   */
  mayWait: boolean
  /** Payload bytes the answer may carry at most. */
  maxReply: number
}

export interface SheepFuzzReport {
  seed: number
  connections: number
  frames: number
  answered: number
  /** Connections the server closed (a fatal frame, or a frame it could not trust). */
  closedByServer: number
  /** Complete frames left unanswered on a connection the server kept open (opcode → count). */
  unanswered: Map<number, number>
  /** Broken rules of the answers: unknown ids, too much payload. */
  violations: string[]
  /** Result codes answered, by code. */
  results: Map<number, number>
}

const name = (text: string, length: number) => {
  const b = Buffer.alloc(length)
  b.write(text.slice(0, length - 1))
  return b
}

/** Requests as dog, sheepfs and sheep send them: the seeds the mutations start from. */
function templates(r: FuzzRandom, t: SheepFuzzTarget): Array<{ opcode: number; flags: number; dataLength: number; fill(h: Buffer): void; payload?: Buffer }> {
  const dataOid = vidToDataOid(t.scratchVid, r.int(64))
  const anyOid = r.pick([dataOid, vidToVdiOid(t.scratchVid), vidToAttrOid(t.scratchVid, r.int(4)), r.u64()])
  const obj =
    (oid: bigint, offset = 0) =>
    (h: Buffer) => {
      h.writeBigUInt64LE(oid, OID_AT)
      h.writeUInt32LE(offset, OFFSET_AT)
    }
  const small = r.pick([512, 4096, 65536])
  const vdiName = name(r.chance(0.5) ? t.scratchName : `fuzz-${r.int(1000)}`, SD_MAX_VDI_LEN)
  const nameTag = Buffer.concat([vdiName, Buffer.alloc(256)])
  const vdiReq =
    (size: bigint, base = 0) =>
    (h: Buffer) => {
      h.writeBigUInt64LE(size, 16)
      h.writeUInt32LE(base, 24)
    }
  return [
    { opcode: SD_OP_READ_OBJ, flags: 0, dataLength: small, fill: obj(anyOid, r.int(8) * 4096) },
    { opcode: SD_OP_WRITE_OBJ, flags: SD_FLAG_CMD_WRITE, dataLength: small, fill: obj(dataOid, r.int(8) * 4096), payload: r.bytes(small) },
    { opcode: SD_OP_CREATE_AND_WRITE_OBJ, flags: SD_FLAG_CMD_WRITE, dataLength: small, fill: obj(dataOid), payload: r.bytes(small) },
    { opcode: SD_OP_READ_PEER, flags: 0, dataLength: small, fill: obj(anyOid) },
    { opcode: SD_OP_WRITE_PEER, flags: SD_FLAG_CMD_WRITE, dataLength: small, fill: obj(dataOid), payload: r.bytes(small) },
    { opcode: SD_OP_CREATE_AND_WRITE_PEER, flags: SD_FLAG_CMD_WRITE, dataLength: small, fill: obj(dataOid), payload: r.bytes(small) },
    { opcode: SD_OP_REMOVE_OBJ, flags: 0, dataLength: 0, fill: obj(dataOid) },
    { opcode: SD_OP_REMOVE_PEER, flags: 0, dataLength: 0, fill: obj(dataOid) },
    { opcode: SD_OP_DISCARD_OBJ, flags: 0, dataLength: 0, fill: obj(dataOid) },
    { opcode: SD_OP_DECREF_OBJ, flags: 0, dataLength: 0, fill: obj(dataOid) },
    { opcode: SD_OP_DECREF_PEER, flags: 0, dataLength: 0, fill: obj(dataOid) },
    { opcode: SD_OP_EXIST, flags: 0, dataLength: 0, fill: obj(anyOid) },
    { opcode: SD_OP_GET_HASH, flags: 0, dataLength: 0, fill: obj(anyOid) },
    { opcode: SD_OP_FLUSH_VDI, flags: 0, dataLength: 0, fill: obj(vidToVdiOid(t.scratchVid)) },
    { opcode: SD_OP_OIDS_EXIST, flags: SD_FLAG_CMD_WRITE | SD_FLAG_CMD_PIGGYBACK, dataLength: 16, fill: () => undefined, payload: r.bytes(16) },
    { opcode: SD_OP_NEW_VDI, flags: SD_FLAG_CMD_WRITE, dataLength: SD_MAX_VDI_LEN, fill: vdiReq(BigInt(r.int(64)) << 20n), payload: vdiName },
    { opcode: SD_OP_GET_VDI_INFO, flags: SD_FLAG_CMD_WRITE, dataLength: 512, fill: () => undefined, payload: nameTag },
    { opcode: SD_OP_LOCK_VDI, flags: SD_FLAG_CMD_WRITE, dataLength: 512, fill: () => undefined, payload: nameTag },
    { opcode: SD_OP_RELEASE_VDI, flags: 0, dataLength: 0, fill: vdiReq(0n, t.scratchVid) },
    { opcode: SD_OP_GET_VDI_ATTR, flags: SD_FLAG_CMD_WRITE, dataLength: 4096, fill: () => undefined, payload: Buffer.concat([nameTag, r.bytes(4096 - 512)]) },
    { opcode: SD_OP_INODE_COHERENCE, flags: 0, dataLength: 0, fill: (h) => h.writeUInt32LE(t.scratchVid, 16) },
    { opcode: SD_OP_VDI_STATE_CHECKPOINT_CTL, flags: 0, dataLength: 0, fill: (h) => h.writeUInt32LE(r.int(2), 16) },
    ...[SD_OP_READ_VDIS, SD_OP_READ_DEL_VDIS, SD_OP_GET_VDI_COPIES, SD_OP_GET_OBJ_LIST, SD_OP_GET_EPOCH, SD_OP_STAT_CLUSTER].map((opcode) => ({
      opcode,
      flags: 0,
      dataLength: r.pick([0, 8, 4096, 1 << 20]),
      fill: () => undefined,
    })),
    ...[SD_OP_GET_NODE_LIST, SD_OP_STAT_SHEEP, SD_OP_STAT, SD_OP_STAT_RECOVERY, SD_OP_MD_INFO, SD_OP_CLUSTER_INFO].map((opcode) => ({
      opcode,
      flags: 0,
      dataLength: r.pick([0, 64, 4096, 65536]),
      fill: () => undefined,
    })),
  ]
}

/** A data length worth trying: 0, small, the limits and their neighbours, up to 2^32 − 1. */
function fuzzLength(r: FuzzRandom): number {
  return r.pick([0, 1, r.int(512), r.int(65536), 4096, SD_MAX_DATA_LENGTH, SD_MAX_DATA_LENGTH + 1, 0xffff_ffff, r.u32(), 4 * 1024 * 1024])
}

/** A header with a random opcode, flags and length around a valid protocol version. */
function randomHeader(r: FuzzRandom, t: SheepFuzzTarget): Buffer {
  const h = r.bytes(SD_HEADER_SIZE)
  const opcode = r.chance(0.7) ? r.pick(KNOWN_OPCODES) : r.int(256)
  h[1] = opcode
  h[0] = r.chance(0.9) ? (opcode >= 0x80 ? SD_SHEEP_PROTO_VER : SD_PROTO_VER) : r.int(256)
  h.writeUInt16LE(r.pick([0, SD_FLAG_CMD_WRITE, SD_FLAG_CMD_WRITE | SD_FLAG_CMD_PIGGYBACK, r.int(0x10000)]), 2)
  h.writeUInt32LE(r.pick([0, t.epoch, t.epoch + 1, r.u32()]), 4)
  h.writeUInt32LE(fuzzLength(r), 12)
  if (r.chance(0.5)) h.writeBigUInt64LE(r.pick([vidToDataOid(t.scratchVid, r.int(1024)), vidToVdiOid(t.scratchVid), r.u64()]), OID_AT)
  if (r.chance(0.3)) h.writeUInt32LE(r.pick([0, 4096, r.u32()]), OFFSET_AT)
  return h
}

/** A template request with 1–4 mutations: bits flipped, bytes set, fields given odd values. */
function mutatedHeader(r: FuzzRandom, t: SheepFuzzTarget): { header: Buffer; payload?: Buffer } {
  const tpl = r.pick(templates(r, t))
  const h = Buffer.alloc(SD_HEADER_SIZE)
  h[0] = tpl.opcode >= 0x80 ? SD_SHEEP_PROTO_VER : SD_PROTO_VER
  h[1] = tpl.opcode
  h.writeUInt16LE(tpl.flags, 2)
  h.writeUInt32LE(tpl.opcode === SD_OP_READ_PEER || tpl.opcode === SD_OP_WRITE_PEER || tpl.opcode >= 0x80 ? t.epoch : 0, 4)
  h.writeUInt32LE(tpl.dataLength, 12)
  tpl.fill(h)
  let payload = tpl.payload
  for (let n = r.between([1, 4]); n > 0; n--) {
    switch (r.int(7)) {
      case 0:
        h[r.int(SD_HEADER_SIZE)] ^= 1 << r.int(8)
        break
      case 1:
        h[r.int(SD_HEADER_SIZE)] = r.pick([0, 0xff, 0x7f, 0x80, r.int(256)])
        break
      case 2:
        h.writeUInt32LE(fuzzLength(r), 12)
        break
      case 3:
        h.writeUInt32LE(r.pick([0xffff_ffff, SD_MAX_DATA_LENGTH, 4 * 1024 * 1024 - 1, r.u32()]), OFFSET_AT)
        break
      case 4:
        h.writeBigUInt64LE(r.pick([0n, 0xffff_ffff_ffff_ffffn, r.u64(), vidToDataOid(t.scratchVid, r.u32() >>> 8)]), r.pick([OID_AT, COW_OID_AT]))
        break
      case 5:
        h.writeUInt16LE(h.readUInt16LE(2) ^ (1 << r.int(16)), 2)
        break
      default:
        if (payload && payload.length > 0) {
          payload = Buffer.from(payload)
          payload[r.int(payload.length)] = r.int(256)
        }
    }
  }
  return { header: h, payload }
}

/** True when a frame could name the protected VDI (its vid in an id field, its name in the payload). */
function touchesProtected(h: Buffer, payload: Buffer | undefined, t: SheepFuzzTarget): boolean {
  for (const at of [OID_AT, COW_OID_AT]) if (oidToVid(h.readBigUInt64LE(at)) === t.protectedVid) return true
  for (let at = 16; at + 4 <= SD_HEADER_SIZE; at += 4) if ((h.readUInt32LE(at) & 0xffffff) === t.protectedVid) return true
  return payload !== undefined && payload.includes(t.protectedName)
}

const KNOWN_OPCODES: readonly number[] = [
  0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x82, 0x84, 0x85, 0x86, 0x87, 0x89, 0x8a, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
  0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa8, 0xa9, 0xab, 0xac, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb8, 0xb9,
  0xba, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd,
]

/** The frames of one connection, and what ends it: a truncated frame, or a drop mid-frame. */
function planConnection(r: FuzzRandom, t: SheepFuzzTarget): { frames: PlannedFrame[]; tail: Buffer | undefined; dropAfterWrite: boolean } {
  const frames: PlannedFrame[] = []
  let tail: Buffer | undefined
  const count = r.between(FRAMES_PER_CONNECTION)
  for (let i = 0; i < count && tail === undefined; i++) {
    let header: Buffer
    let payload: Buffer | undefined
    do {
      ;({ header, payload } = r.chance(0.5) ? { header: randomHeader(r, t), payload: undefined } : mutatedHeader(r, t))
    } while (touchesProtected(header, payload, t))
    const id = i + 1
    header.writeUInt32LE(id, 8)
    const flags = header.readUInt16LE(2)
    const dataLength = header.readUInt32LE(12)
    const carries = (flags & SD_FLAG_CMD_WRITE) !== 0 && dataLength > 0
    const maxReply = (flags & SD_FLAG_CMD_WRITE) === 0 || (flags & SD_FLAG_CMD_PIGGYBACK) !== 0 ? dataLength : 0
    const mayWait = ((header.readUInt32LE(4) - t.epoch) | 0) > 0
    if (!carries) {
      frames.push({ bytes: header, id, opcode: header[1] as number, complete: true, mayWait, maxReply })
      continue
    }
    if (dataLength <= FUZZ_MAX_SENT_PAYLOAD_BYTES) {
      const body = Buffer.alloc(dataLength)
      ;(payload ?? r.bytes(Math.min(dataLength, 4096))).copy(body)
      frames.push({ bytes: Buffer.concat([header, body]), id, opcode: header[1] as number, complete: true, mayWait, maxReply })
      continue
    }
    // a payload too long to send: the frame is sent in part and ends the connection
    tail = Buffer.concat([header, r.bytes(r.int(4096))])
  }
  if (tail === undefined && r.chance(0.1)) tail = r.bytes(r.between([1, SD_HEADER_SIZE - 1]))
  return { frames, tail, dropAfterWrite: r.chance(0.1) }
}

/** Sends one connection's plan and waits for its answers; records what it sees in `report`. */
async function fuzzConnection(r: FuzzRandom, t: SheepFuzzTarget, report: SheepFuzzReport): Promise<void> {
  const plan = planConnection(r, t)
  const holdMs = r.between(TRUNCATED_HOLD_MS)
  const splitAt = r.chance(0.3) ? r.int(64) + 1 : 0
  report.connections++
  report.frames += plan.frames.length + (plan.tail ? 1 : 0)
  const pending = new Map(plan.frames.filter((f) => f.complete && !f.mayWait).map((f) => [f.id, f]))
  const sentIds = new Set(plan.frames.map((f) => f.id))
  await new Promise<void>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: t.port, localAddress: t.localAddress })
    let buffered = Buffer.alloc(0)
    let expect: { id: number; opcode: number; length: number } | undefined
    let finished = false
    const finish = (closedByServer: boolean) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      if (closedByServer) report.closedByServer++
      else if (!plan.dropAfterWrite) for (const f of pending.values()) report.unanswered.set(f.opcode, (report.unanswered.get(f.opcode) ?? 0) + 1)
      socket.destroy()
      resolve()
    }
    const timer = setTimeout(() => finish(false), ANSWER_TIMEOUT_MS)
    const settleIfDone = () => {
      if (pending.size > 0) return
      if (plan.tail) setTimeout(() => finish(false), holdMs)
      else finish(false)
    }
    socket.on('error', () => finish(true))
    socket.on('close', () => finish(!finished && pending.size > 0))
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      for (;;) {
        if (expect === undefined) {
          if (buffered.length < SD_HEADER_SIZE) break
          const id = buffered.readUInt32LE(8)
          const length = buffered.readUInt32LE(12)
          const f = plan.frames.find((p) => p.id === id)
          if (f === undefined || !sentIds.delete(id))
            report.violations.push(`answer with id ${id} never sent or answered twice (opcode 0x${buffered[1]?.toString(16)})`)
          else if (length > f.maxReply) report.violations.push(`opcode 0x${f.opcode.toString(16)}: ${length} payload bytes, the request allowed ${f.maxReply}`)
          const result = buffered.readUInt32LE(16)
          report.results.set(result, (report.results.get(result) ?? 0) + 1)
          expect = { id, opcode: buffered[1] as number, length }
          buffered = buffered.subarray(SD_HEADER_SIZE)
        }
        if (buffered.length < expect.length) break
        buffered = buffered.subarray(expect.length)
        pending.delete(expect.id)
        report.answered++
        expect = undefined
      }
      settleIfDone()
    })
    socket.once('connect', () => {
      const all = Buffer.concat([...plan.frames.map((f) => f.bytes), plan.tail ?? Buffer.alloc(0)])
      if (splitAt > 0 && all.length > splitAt) {
        // in two writes, so a header or payload arrives in pieces
        socket.write(all.subarray(0, splitAt))
        setImmediate(() => socket.write(all.subarray(splitAt)))
      } else socket.write(all)
      if (plan.dropAfterWrite) setTimeout(() => finish(false), r.int(20))
      else settleIfDone()
    })
  })
}

/** Runs `frames` frames or more, `parallel` connections at a time. */
export async function fuzzSheep(t: SheepFuzzTarget, opts: { seed: number; frames: number; parallel: number }): Promise<SheepFuzzReport> {
  const report: SheepFuzzReport = {
    seed: opts.seed,
    connections: 0,
    frames: 0,
    answered: 0,
    closedByServer: 0,
    unanswered: new Map(),
    violations: [],
    results: new Map(),
  }
  // each lane has its own generator, seeded from the seed: the frames do not depend on timing
  const lane = async (k: number) => {
    const r = new FuzzRandom((opts.seed + k * 0x9e3779b1) >>> 0)
    while (report.frames < opts.frames) await fuzzConnection(r, t, report)
  }
  await Promise.all(Array.from({ length: opts.parallel }, (_, k) => lane(k)))
  return report
}

export interface NbdFuzzTarget {
  port: number
  /** The export the requests go to (a VDI that may be damaged). */
  exportName: string
  exportBytes: number
}

export interface NbdFuzzReport {
  seed: number
  connections: number
  requests: number
  /** Connections whose handshake did not reach the transmission phase (fuzzed on purpose). */
  handshakesRefused: number
}

const NBD_COMMANDS = [NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS] as const
const NBD_FLAGS = [0, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE] as const

/** One NBD transmission request, random around the valid ones; `payload` for a write that sends one. */
function nbdRequest(r: FuzzRandom, t: NbdFuzzTarget, cookie: bigint): Buffer {
  const h = Buffer.alloc(NBD_REQUEST_HEADER_BYTES)
  h.writeUInt32BE(r.chance(0.97) ? NBD_REQUEST_MAGIC : r.u32(), 0)
  h.writeUInt16BE(r.chance(0.8) ? r.pick(NBD_FLAGS) : r.int(0x10000), 4)
  const type = r.chance(0.9) ? r.pick(NBD_COMMANDS) : r.int(0x10000)
  h.writeUInt16BE(type, 6)
  h.writeBigUInt64BE(cookie, 8)
  const offset = r.pick([
    BigInt(r.int(t.exportBytes)),
    BigInt(t.exportBytes),
    BigInt(t.exportBytes - 512),
    r.u64(),
    BigInt(r.int(t.exportBytes / 4096)) * 4096n,
  ])
  h.writeBigUInt64BE(offset, 16)
  const length = r.pick([0, 1, 512, 4096, r.int(1 << 20), 32 * 1024 * 1024, 32 * 1024 * 1024 + 1, 0xffff_ffff, r.u32()])
  h.writeUInt32BE(length, 24)
  if (type !== NBD_CMD_WRITE) return h
  // a write's payload: whole when small, else a part of it (the connection ends there)
  const sent = length <= FUZZ_MAX_SENT_PAYLOAD_BYTES && r.chance(0.9) ? length : r.int(Math.min(length, FUZZ_MAX_SENT_PAYLOAD_BYTES) + 1)
  return Buffer.concat([h, r.bytes(sent)])
}

/** A fixed newstyle handshake to `exportName` with NBD_OPT_EXPORT_NAME, sometimes spoiled. */
function nbdHandshake(r: FuzzRandom, t: NbdFuzzTarget): Buffer {
  const flags = Buffer.alloc(4)
  flags.writeUInt32BE(r.chance(0.9) ? 1 | 2 : r.u32())
  const opt = (option: number, data: Buffer) => {
    const h = Buffer.alloc(16)
    h.write('IHAVEOPT', 0, 'latin1')
    h.writeUInt32BE(option, 8)
    h.writeUInt32BE(r.chance(0.95) ? data.length : r.u32(), 12)
    return Buffer.concat([h, data])
  }
  const junk = Array.from({ length: r.int(3) }, () => opt(r.chance(0.5) ? r.int(16) : r.u32(), r.bytes(r.int(64))))
  const name = r.chance(0.95) ? Buffer.from(t.exportName) : r.bytes(r.int(300))
  // NBD_OPT_STRUCTURED_REPLY (8) now and then, so both reply kinds are exercised
  const structured = r.chance(0.5) ? [opt(8, Buffer.alloc(0))] : []
  return Buffer.concat([flags, ...junk, ...structured, opt(1, name)])
}

/** Opens `connections` NBD connections, `parallel` at a time, each a handshake and random requests. */
export async function fuzzNbd(t: NbdFuzzTarget, opts: { seed: number; requests: number; parallel: number }): Promise<NbdFuzzReport> {
  const report: NbdFuzzReport = { seed: opts.seed, connections: 0, requests: 0, handshakesRefused: 0 }
  const one = (r: FuzzRandom) =>
    new Promise<void>((resolve) => {
      report.connections++
      const socket = net.connect({ host: '127.0.0.1', port: t.port })
      let received = 0
      let done = false
      const finish = () => {
        if (done) return
        done = true
        clearTimeout(timer)
        socket.destroy()
        resolve()
      }
      const timer = setTimeout(finish, ANSWER_TIMEOUT_MS)
      socket.on('error', finish)
      socket.on('close', finish)
      socket.on('data', (b: Buffer) => {
        received += b.length
      })
      socket.once('connect', () => {
        socket.write(nbdHandshake(r, t))
        const n = r.between(NBD_REQUESTS_PER_CONNECTION)
        const parts: Buffer[] = []
        for (let i = 0; i < n; i++) parts.push(nbdRequest(r, t, BigInt(i + 1)))
        report.requests += n
        if (r.chance(0.1)) parts.push(r.bytes(r.between([1, NBD_REQUEST_HEADER_BYTES - 1])))
        socket.write(Buffer.concat(parts))
        // drop mid-stream at once, or give the server a moment to answer first
        setTimeout(
          () => {
            if (received === 0) report.handshakesRefused++
            finish()
          },
          r.chance(0.2) ? 0 : r.between([50, 400]),
        )
      })
    })
  const lane = async (k: number) => {
    const r = new FuzzRandom((opts.seed + k * 0x85ebca6b) >>> 0)
    while (report.requests < opts.requests) await one(r)
  }
  await Promise.all(Array.from({ length: opts.parallel }, (_, k) => lane(k)))
  return report
}
