// The write-intent log of the checksum layer (sheep/store/intent-log.ts): a mark is durable in
// the file before `mark` resolves, stays while a mutation is under way or began since the clean
// looked, is dropped once the object was idle (after its checksums were synced), and what a
// crash leaves is read back by `recover`.
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { INTENT_LOG_COMPACT_BYTES, INTENT_LOG_FILE, IntentLog } from '../../sheep/store/intent-log.js'
import { tempDir } from '../../harness/sheep.js'

/** The keys the log file says are dirty: marks not followed by a clean record. */
function logOf(dir: string): string[] {
  const dirty: string[] = []
  for (const line of fs.readFileSync(path.join(dir, INTENT_LOG_FILE), 'utf8').split('\n').filter(Boolean)) {
    const cleaned = line.startsWith('-')
    const key = cleaned ? line.slice(1) : line
    const at = dirty.indexOf(key)
    if (at >= 0) dirty.splice(at, 1)
    if (!cleaned) dirty.push(key)
  }
  return dirty
}

/** A log in a fresh directory, started empty, that notes each syncChecksums call in `synced`. */
async function startedLog(t: Test): Promise<{ dir: string; log: IntentLog; synced: bigint[][] }> {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const synced: bigint[][] = []
  const log = new IntentLog({ dir, nosync: true, syncChecksums: async (keys) => void synced.push(keys) })
  t.teardown(() => log.stop())
  await log.reset()
  return { dir, log, synced }
}

t.test('marks are written before mark resolves and dropped only when idle and synced', async (t) => {
  const { dir, log, synced } = await startedLog(t)
  t.same(logOf(dir), [])
  await Promise.all([log.mark(1n), log.mark(2n)])
  t.same(logOf(dir).sort(), ['0000000000000001', '0000000000000002'], 'both marks are in the file')
  t.ok(log.isDirty(1n))
  log.release(1n)
  // key 2 is still being written: it stays
  await log.clean(Date.now() + 60_000, 0)
  t.same(synced, [[1n]], 'the idle key’s checksums were synced first')
  t.same(logOf(dir), ['0000000000000002'])
  t.notOk(log.isDirty(1n))
  t.ok(log.isDirty(2n))
  log.release(2n)
  await log.clean(Date.now() + 60_000, 0)
  t.same(logOf(dir), [])
})

t.test('a mutation that begins while a clean runs keeps its mark', async (t) => {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  let log: IntentLog
  const marked: Promise<void>[] = []
  log = new IntentLog({
    dir,
    nosync: true,
    // a write of key 3 arrives while its checksums are being synced
    syncChecksums: async () => {
      marked.push(log.mark(3n))
    },
  })
  t.teardown(() => log.stop())
  await log.reset()
  await log.mark(3n)
  log.release(3n)
  await log.clean(Date.now() + 60_000, 0)
  await Promise.all(marked)
  t.ok(log.isDirty(3n), 'still dirty')
  t.same(logOf(dir), ['0000000000000003'], 'and still in the file')
})

t.test('recover reads back what a crash left', async (t) => {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  await log.reset()
  await log.mark(0x00abcdef00000001n)
  log.stop() // killed here
  const again = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.same(await again.recover(), [0x00abcdef00000001n])
  await again.reset()
  again.stop()
  t.same(await again.recover(), [], 'empty once dealt with')
})

t.test('an unstable write keeps its mark until a flush made it durable', async (t) => {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.teardown(() => log.stop())
  await log.reset()
  await log.mark(4n, { unstable: true })
  log.release(4n)
  await log.clean(Date.now() + 60_000, 0)
  t.ok(log.isDirty(4n), 'idle but not flushed: still dirty')
  t.same(logOf(dir), ['0000000000000004'])
  // a flush that began before another unstable write of it returned does not cover that write
  const early = log.unstableSnapshot()
  await log.mark(4n, { unstable: true })
  log.release(4n)
  log.flushed(early)
  await log.clean(Date.now() + 60_000, 0)
  t.ok(log.isDirty(4n), 'written unstably again after the flush looked: still dirty')
  // a write still under way when a flush looks is not covered by it either
  await log.mark(4n, { unstable: true })
  const during = log.unstableSnapshot()
  t.equal(during.size, 0, 'a mutation under way is not in the snapshot')
  log.release(4n)
  const after = log.unstableSnapshot()
  log.flushed(after)
  await log.clean(Date.now() + 60_000, 0)
  t.notOk(log.isDirty(4n), 'flushed and idle: clean')
  t.same(logOf(dir), [])
})

t.test('a clean appends records to the log; it is rewritten only once it has grown large', async (t) => {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, INTENT_LOG_FILE)
  const log = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.teardown(() => log.stop())
  await log.reset()
  const inode = fs.statSync(file).ino
  await log.mark(1n)
  await log.mark(2n)
  log.release(1n)
  await log.clean(Date.now() + 60_000, 0)
  t.same(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean), ['0000000000000001', '0000000000000002', '-0000000000000001'])
  t.equal(fs.statSync(file).ino, inode, 'appended to, not replaced')
  await log.mark(1n)
  log.release(1n)
  t.same(logOf(dir), ['0000000000000002', '0000000000000001'], 'marked again after its clean record')
  // a log past the threshold is replaced by one with the dirty keys alone
  let key = 0x100n
  while (fs.statSync(file).size < INTENT_LOG_COMPACT_BYTES) {
    const batch = Array.from({ length: 2000 }, () => key++)
    await Promise.all(batch.map((k) => log.mark(k)))
    for (const k of batch) log.release(k)
    await log.clean(Date.now() + 60_000, 0)
  }
  await log.mark(3n)
  log.release(3n)
  await log.clean(Date.now() + 60_000, 0)
  t.same(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean), ['0000000000000002'], 'compacted: the one key still being written')
  t.not(fs.statSync(file).ino, inode, 'by a new file renamed over it')
  const again = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.same(await again.recover(), [2n])
})

t.test('recover: a clean record undoes the mark before it, not one after it; torn lines are skipped', async (t) => {
  const dir = tempDir('intent-log-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  // key 1 cleaned then marked again; key 2 cleaned; key 3's clean record torn by the crash
  fs.writeFileSync(
    path.join(dir, INTENT_LOG_FILE),
    ['0000000000000001', '0000000000000002', '0000000000000003', '-0000000000000001', '-0000000000000002', '0000000000000001', '-000000000000'].join('\n'),
  )
  const log = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.same((await log.recover()).sort(), [1n, 3n])
})

t.test('marks ahead: written with the key’s mark, then used without another append, cleaned unused', async (t) => {
  const { dir, log, synced } = await startedLog(t)
  const file = path.join(dir, INTENT_LOG_FILE)
  await log.mark(10n, { ahead: [11n, 12n, 13n] })
  t.same(logOf(dir), ['000000000000000a', '000000000000000b', '000000000000000c', '000000000000000d'], 'one append holds the key and the keys ahead')
  const bytes = fs.statSync(file).size
  await log.mark(11n, { ahead: [12n, 13n, 14n] })
  t.equal(fs.statSync(file).size, bytes, 'the next object’s mark was already durable: nothing appended')
  log.release(10n)
  log.release(11n)
  await log.clean(Date.now() + 60_000, 0)
  t.same(synced, [[10n, 11n]], 'only the keys that were written have checksums to sync')
  t.same(logOf(dir), [], 'the unused marks are cleaned too')
  t.notOk(log.isDirty(12n))
  // a crash before the clean: every key of the append reads back as dirty
  await log.mark(20n, { ahead: [21n] })
  const again = new IntentLog({ dir, nosync: true, syncChecksums: async () => undefined })
  t.same((await again.recover()).sort(), [20n, 21n])
  log.release(20n)
})
