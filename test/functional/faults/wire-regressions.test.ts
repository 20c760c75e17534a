// What the wire fuzz (wire-fuzz.test.ts) found, each frame replayed on its own against one sheep:
// a DECREF whose count overflows a ledger counter threw out of the update (SYSTEM_ERROR and an
// error in the log) instead of wrapping as the original's 32-bit counters do; a DECREF naming a
// data object or an inode rather than a ledger wrote a ledger over the object (or could remove
// the inode) — now INVALID_PARMS; a read-type op asked with too small a buffer made the server log
// an error, so any client could fill the log with them — now a warning, still BUFFER_SMALL.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SheepConnection } from '../../../lib/client.js'
import { REQ_REF } from '../../../lib/codec.js'
import { LEDGER_BIT, vidToDataOid, vidToVdiOid } from '../../../lib/oid.js'
import { SD_OP_DECREF_OBJ, SD_OP_DECREF_PEER, SD_OP_STAT, SD_RES_BUFFER_SMALL, SD_RES_INVALID_PARMS, SD_RES_SUCCESS } from '../../../lib/proto.js'
import { getNodeList, getVdiInfo, makeFs } from '../../../lib/sheep-api.js'
import { dog, isAlive, startSheep, stopSheep } from '../../../harness/sheep.js'

const MiB = 1024 * 1024

t.test('frames the wire fuzz found', async (t) => {
  const sheep = await startSheep()
  const conn = new SheepConnection({ host: '127.0.0.1', port: sheep.port }, { timeoutMs: 20_000 })
  t.teardown(async () => {
    conn.close()
    await stopSheep(sheep)
    fs.rmSync(sheep.dir, { recursive: true, force: true })
  })
  await makeFs(conn, { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: 0, store: 'plain' })
  const data = crypto.randomBytes(8 * MiB)
  t.equal((await dog(['vdi', 'create', 'v', '8M'], { port: sheep.port })).status, 0, 'VDI created')
  t.equal((await dog(['vdi', 'write', 'v'], { port: sheep.port, input: data })).status, 0, 'and written')
  const { vid } = await getVdiInfo(conn, 'v')
  const { epoch } = await getNodeList(conn)
  const decref = (opcode: number, oid: bigint, generation: number, count: number) =>
    conn.request({ opcode, epoch, variant: REQ_REF, fields: { oid, generation, count } })

  for (const [what, opcode] of [
    ['DECREF_PEER', SD_OP_DECREF_PEER],
    ['DECREF_OBJ', SD_OP_DECREF_OBJ],
  ] as const) {
    const onData = await decref(opcode, vidToDataOid(vid, 0), 0, 0)
    t.equal(onData.rsp.result, SD_RES_INVALID_PARMS, `${what} naming a data object: INVALID_PARMS`)
    const onInode = await decref(opcode, LEDGER_BIT | vidToVdiOid(vid), 0, 0)
    t.equal(onInode.rsp.result, SD_RES_INVALID_PARMS, `${what} naming the "ledger" of an inode: INVALID_PARMS`)
  }
  const read = await dog(['vdi', 'read', 'v'], { port: sheep.port })
  t.ok(read.status === 0 && read.stdoutBytes.equals(data), 'the data object and the inode are intact')

  const ledger = LEDGER_BIT | vidToDataOid(vid, 1)
  for (let i = 1; i <= 2; i++) {
    const r = await decref(SD_OP_DECREF_PEER, ledger, 1, 0x7fff_ffff)
    t.equal(r.rsp.result, SD_RES_SUCCESS, `a count that overflows a ledger counter wraps (${i})`)
  }

  const stat = await conn.request({ opcode: SD_OP_STAT, readLength: 8 })
  t.equal(stat.rsp.result, SD_RES_BUFFER_SMALL, 'STAT with an 8-byte buffer: BUFFER_SMALL')
  t.ok(isAlive(sheep.pid), 'the sheep runs')
  const log = fs.readFileSync(path.join(sheep.dir, 'sheep.log'), 'utf8')
  t.same(
    log.split('\n').filter((l) => / (ERROR|FATAL) /.test(l)),
    [],
    'none of it logged an error',
  )
})
