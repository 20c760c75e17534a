// Exceptions become result codes in one place (lib/errors.ts resultOfError), and every request
// gets an answer: a disk error is SD_RES_EIO — never SD_RES_SUCCESS, as a Node error's string
// code once encoded — and a cluster op whose main phase throws still answers, so the client
// does not hang and the daemon stops cleanly. The faults are real: an object file and the
// config file replaced by directories (root ignores permission bits, so chmod cannot do it).
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { REQ_CLUSTER, REQ_OBJ } from '../../lib/codec.js'
import { resultOfError, SdError } from '../../lib/errors.js'
import { vidToDataOid } from '../../lib/oid.js'
import {
  SD_OP_ALTER_CLUSTER_COPY,
  SD_OP_GET_HASH,
  SD_OP_READ_OBJ,
  SD_RES_EIO,
  SD_RES_NO_SPACE,
  SD_RES_NOT_FORMATTED,
  SD_RES_SUCCESS,
  SD_RES_SYSTEM_ERROR,
} from '../../lib/proto.js'
import { getVdiInfo, makeFs } from '../../lib/sheep-api.js'
import { dog, isAlive, startSheep, stopSheep, waitFor } from '../../harness/sheep.js'

t.test('resultOfError maps every exception to a failure code', async (t) => {
  t.equal(resultOfError(new SdError(SD_RES_NOT_FORMATTED)), SD_RES_NOT_FORMATTED, 'an SdError keeps its code')
  t.equal(resultOfError(Object.assign(new Error('x'), { code: 'ENOSPC', errno: -28 })), SD_RES_NO_SPACE, 'ENOSPC is NO_SPACE')
  t.equal(resultOfError(Object.assign(new Error('x'), { code: 'EIO', errno: -5 })), SD_RES_EIO, 'EIO is EIO')
  t.equal(resultOfError(Object.assign(new Error('x'), { code: 'EMFILE', errno: -24 })), SD_RES_EIO, 'any other errno is EIO')
  t.equal(resultOfError(new TypeError('bug')), SD_RES_SYSTEM_ERROR, 'anything else is SYSTEM_ERROR')
  t.equal(resultOfError('a string'), SD_RES_SYSTEM_ERROR, 'even a thrown non-error')
})

t.test('a disk error answers EIO, a throwing main phase answers, the daemon stops cleanly', async (t) => {
  const sheep = await startSheep({ nosync: false })
  t.teardown(async () => {
    await stopSheep(sheep, 'SIGKILL')
    fs.rmSync(sheep.dir, { recursive: true, force: true })
  })
  const conn = new SheepConnection({ host: '127.0.0.1', port: sheep.port }, { timeoutMs: 20_000 })
  t.teardown(() => conn.close())
  await makeFs(conn, { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: 0, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: sheep.port })).status, 0, 'VDI created')
  t.equal((await dog(['vdi', 'write', 'v', '0', '4096'], { port: sheep.port, input: Buffer.alloc(4096, 7) })).status, 0, 'one object written')
  const { vid } = await getVdiInfo(conn, 'v')
  const oid = vidToDataOid(vid, 0)
  const file = path.join(sheep.dir, 'obj', oid.toString(16).padStart(16, '0'))

  // the replica's file becomes a directory: reading it fails with EISDIR
  fs.rmSync(file)
  fs.mkdirSync(file)
  const hash = await conn.request({ opcode: SD_OP_GET_HASH, variant: REQ_OBJ, fields: { oid } })
  t.equal(hash.rsp.result, SD_RES_EIO, 'GET_HASH of an unreadable replica answers EIO, not success')
  const read = await conn.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid, offset: 0 }, readLength: 4096 })
  t.not(read.rsp.result, SD_RES_SUCCESS, 'READ_OBJ of it does not answer success')
  t.ok(isAlive(sheep.pid), 'the daemon keeps serving')

  // the config file becomes a directory: ALTER_CLUSTER_COPY's main phase throws on saving it
  const config = path.join(sheep.dir, 'config')
  fs.rmSync(config)
  fs.mkdirSync(config)
  fs.writeFileSync(path.join(config, 'keep'), '')
  const started = Date.now()
  const alter = await conn.request({ opcode: SD_OP_ALTER_CLUSTER_COPY, variant: REQ_CLUSTER, fields: { copies: 2 } })
  t.equal(alter.rsp.result, SD_RES_EIO, 'a main phase that throws answers EIO')
  t.ok(Date.now() - started < 10_000, 'at once, not after a timeout')

  process.kill(sheep.pid, 'SIGTERM')
  t.ok(await waitFor(() => !isAlive(sheep.pid), 10_000), 'SIGTERM stops it: nothing is left waiting for an answer')
})
