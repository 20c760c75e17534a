// Reference counting of data objects shared between a VDI, its snapshots and clones
// (wire-protocol.md §11.6, §12.8). An inode index update that replaces or clears an entry drops
// the reference the inode held: an exclusive reference (gref {0, 0}) removes the object at once;
// a shared one goes to the object's ledger (DECREF), and the object is removed when its ledger
// sums to zero. Nothing that a live VDI still reads is removed; nothing unreferenced is kept.
import { KeyedQueue } from '../lib/async.js'
import { resultOfError } from '../lib/errors.js'
import { REQ_REF, type SdRequest, reqVariant } from '../lib/codec.js'
import { SD_INODE_HEADER_SIZE, SD_INODE_INDEX_SIZE, grefOffset, indexOffset } from '../lib/inode.js'
import { LEDGER_BIT, SD_LEDGER_OBJ_SIZE, isDataObj, isLedgerObj, isVdiObj, oidToVid, vidToDataOid } from '../lib/oid.js'
import { SD_OP_DECREF_OBJ, SD_OP_REMOVE_OBJ, SD_OP_WRITE_OBJ, SD_RES_INVALID_PARMS, SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../lib/proto.js'
import { type ObjFields, gatewayWriteAll, readObject, writeObject } from './replica-io.js'
import { type OpReply, reply } from './op-types.js'
import type { Sheep } from './sheep.js'

const LEDGER_ENTRIES = SD_LEDGER_OBJ_SIZE / 4

/** True when a write to `oid` at [offset, offset+length) falls inside the inode's data_vdi_id. */
export function isIndexUpdate(oid: bigint, offset: number, length: number): boolean {
  return isVdiObj(oid) && length > 0 && offset >= SD_INODE_HEADER_SIZE && offset + length <= SD_INODE_HEADER_SIZE + SD_INODE_INDEX_SIZE
}

/**
 * WRITE_OBJ of an index range: read the old entries and their gref, write, then drop the
 * references of entries that changed and reset their gref (the new owner holds it exclusively).
 */
export async function writeIndexWithRefs(sheep: Sheep, obj: ObjFields, data: Buffer): Promise<OpReply> {
  const first = Math.floor((obj.offset - SD_INODE_HEADER_SIZE) / 4)
  const last = Math.floor((obj.offset + data.length - 1 - SD_INODE_HEADER_SIZE) / 4)
  const count = last - first + 1
  // both at once: tgt updates the index after every object it creates
  const old = await Promise.all([readObject(sheep, obj.oid, indexOffset(first), count * 4), readObject(sheep, obj.oid, grefOffset(first), count * 8)]).catch(
    (e: unknown) => resultOfError(e),
  )
  if (typeof old === 'number') return reply(old)
  const [oldIndex, oldGref] = old
  const result = await gatewayWriteAll(sheep, SD_OP_WRITE_OBJ, obj, data)
  if (result.result !== SD_RES_SUCCESS) return result
  const newIndex = Buffer.from(oldIndex)
  data.copy(newIndex, obj.offset - indexOffset(first))
  const drops: Array<Promise<void>> = []
  let changedGref = false
  for (let i = 0; i < count; i++) {
    const before = oldIndex.readUInt32LE(i * 4)
    const after = newIndex.readUInt32LE(i * 4)
    if (before === after) continue
    const generation = oldGref.readInt32LE(i * 8)
    const refs = oldGref.readInt32LE(i * 8 + 4)
    if (generation !== 0 || refs !== 0) {
      oldGref.fill(0, i * 8, i * 8 + 8)
      changedGref = true
    }
    if (before !== 0) drops.push(dropReference(sheep, vidToDataOid(before, first + i), generation, refs))
  }
  if (changedGref) await writeObject(sheep, obj.oid, grefOffset(first), oldGref, { create: false })
  await Promise.all(drops)
  return result
}

/** Drops one reference to a data object: remove it if exclusive, else DECREF its ledger. */
async function dropReference(sheep: Sheep, dataOid: bigint, generation: number, refs: number): Promise<void> {
  const zeroObj = { cowOid: 0n, copies: 0, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset: 0 }
  if (generation === 0 && refs === 0) {
    const r = await gatewayWriteAll(sheep, SD_OP_REMOVE_OBJ, { ...zeroObj, oid: dataOid }, undefined)
    if (r.result !== SD_RES_SUCCESS && r.result !== SD_RES_NO_OBJ) {
      sheep.log.warn(`failed to remove ${dataOid.toString(16)}: result 0x${r.result.toString(16)}`)
    }
    return
  }
  const r = await gatewayWriteAll(sheep, SD_OP_DECREF_OBJ, { ...zeroObj, oid: LEDGER_BIT | dataOid }, undefined, { generation, count: refs })
  if (r.result !== SD_RES_SUCCESS) sheep.log.warn(`failed to drop a reference to ${dataOid.toString(16)}: result 0x${r.result.toString(16)}`)
}

/** Ledger updates of one object, applied one after another on this node. */
const ledgerUpdates = new KeyedQueue<bigint>()

/**
 * DECREF_PEER on a ledger replica: ledger[g] -= 1, ledger[g+1] += count; when every counter is
 * zero the ledger goes, and the first replica holder removes the data object.
 */
export async function decrefPeer(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  const ref = reqVariant(req, REQ_REF)
  const ledgerOid = ref.oid
  // only the ledger of a data object: a DECREF naming a data object or an inode would write a
  // ledger over it, and one naming the "ledger" of an inode could remove the inode (the original
  // does not look; the fault suite's wire fuzz sent such frames)
  if (!isLedgerObj(ledgerOid) || !isDataObj(ledgerOid & ~LEDGER_BIT)) return reply(SD_RES_INVALID_PARMS)
  return ledgerUpdates.run(ledgerOid, async () => {
    const stored = await sheep.store.read(ledgerOid, 0, SD_LEDGER_OBJ_SIZE)
    const ledger = typeof stored === 'number' ? Buffer.alloc(SD_LEDGER_OBJ_SIZE) : stored
    if (typeof stored === 'number') ledger.writeInt32LE(1, 0) // the owner's own reference
    const g = ref.generation | 0
    if (g < 0 || g + 1 >= LEDGER_ENTRIES) return reply(SD_RES_SUCCESS)
    // 32-bit counters that wrap, as the original's: a count that overflows one (the wire fuzz
    // sent 0x7fffffff twice) must not throw out of the update
    ledger.writeInt32LE((ledger.readInt32LE(g * 4) - 1) | 0, g * 4)
    ledger.writeInt32LE((ledger.readInt32LE((g + 1) * 4) + ref.count) | 0, (g + 1) * 4)
    const empty = ledger.every((b) => b === 0)
    if (!empty) return reply(await sheep.store.create({ oid: ledgerOid, offset: 0, data: ledger }, SD_LEDGER_OBJ_SIZE))
    if (typeof stored !== 'number') await sheep.store.remove(ledgerOid)
    const dataOid = ledgerOid & ~LEDGER_BIT
    const holders = sheep.ring.replicasFor(ledgerOid, sheep.vdiCopies(oidToVid(dataOid)))
    // the data object is removed by one node only: the first holder of the ledger
    if (holders.length > 0 && sheep.isSelf(holders[0])) await dropReference(sheep, dataOid, 0, 0)
    return reply(SD_RES_SUCCESS)
  })
}
