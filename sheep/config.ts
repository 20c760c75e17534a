// The node's persistent metadata in its base directory: the 40-byte `config` file and the epoch
// logs `epoch/%08u` (behaviour.md §12.1–12.2). Every file is replaced atomically (write to
// `<file>.tmp`, fsync, rename) so a crash leaves either the old or the new version.
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { readFields, writeFields } from '../lib/layout.js'
import { CONFIG_FILE, CONFIG_FILE_SIZE, CONFIG_FORMAT_VERSION, type ConfigFile, type SdNode, decodeEpochFile, encodeEpochFile } from '../lib/structs.js'

export async function writeFileAtomic(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.tmp`
  const fh = await fsp.open(tmp, 'w', 0o644)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await fsp.rename(tmp, file)
  const dir = await fsp.open(path.dirname(file), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/** `writeFileAtomic`, done before returning (an epoch log entry must be on disk before anyone sees it). */
export function writeFileAtomicSync(file: string, data: Buffer): void {
  const tmp = `${file}.tmp`
  const fd = fs.openSync(tmp, 'w', 0o644)
  try {
    fs.writeFileSync(fd, data)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  const dir = fs.openSync(path.dirname(file), 'r')
  try {
    fs.fsyncSync(dir)
  } finally {
    fs.closeSync(dir)
  }
}

export function emptyConfig(): ConfigFile {
  return {
    ctime: 0n,
    flags: 0,
    copies: 0,
    defaultStore: '',
    shutdown: 0,
    copyPolicy: 0,
    blockSizeShift: 0,
    version: CONFIG_FORMAT_VERSION,
    space: 0n,
  }
}

export class ConfigStore {
  readonly file: string

  constructor(baseDir: string) {
    this.file = path.join(baseDir, 'config')
  }

  /** The stored config, or undefined when the node was never started here. */
  read(): ConfigFile | undefined {
    let buf: Buffer
    try {
      buf = fs.readFileSync(this.file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    if (buf.length < CONFIG_FILE_SIZE) throw new Error(`${this.file} is ${buf.length} bytes, expected ${CONFIG_FILE_SIZE}`)
    return readFields(buf, CONFIG_FILE)
  }

  async write(cfg: ConfigFile): Promise<void> {
    await writeFileAtomic(this.file, writeFields(Buffer.alloc(CONFIG_FILE_SIZE), CONFIG_FILE, cfg))
  }

  /** `write`, on disk before it returns (with the epoch log it belongs to). */
  writeSync(cfg: ConfigFile): void {
    writeFileAtomicSync(this.file, writeFields(Buffer.alloc(CONFIG_FILE_SIZE), CONFIG_FILE, cfg))
  }
}

export interface EpochRecord {
  epoch: number
  nodes: SdNode[]
  timeSec: bigint
}

/**
 * Epoch logs: one file per epoch holding its node list and creation time. New epochs are
 * recorded in memory at once (membership events are applied synchronously, in order) and
 * written to disk in the same order behind them.
 */
export class EpochStore {
  readonly dir: string
  private readonly cache = new Map<number, EpochRecord>()

  constructor(baseDir: string) {
    this.dir = path.join(baseDir, 'epoch')
  }

  init(): void {
    fs.mkdirSync(this.dir, { recursive: true })
  }

  private file(epoch: number): string {
    return path.join(this.dir, String(epoch).padStart(8, '0'))
  }

  /**
   * Records an epoch, on disk before it returns: a membership change is in the epoch log before
   * any client can see it, so a node killed right after still knows the epoch on restart (the
   * last survivor's epoch decides which nodes a restarting cluster waits for). Epoch changes
   * are rare; the few milliseconds of a synchronous write are the price of that order.
   */
  record(epoch: number, nodes: readonly SdNode[], timeSec: bigint): void {
    writeFileAtomicSync(this.file(epoch), encodeEpochFile(nodes, timeSec))
    this.cache.set(epoch, { epoch, nodes: [...nodes], timeSec })
  }

  /** The newest epoch recorded here (0 when none). */
  latest(): number {
    let max = Math.max(0, ...this.cache.keys())
    for (const name of fs.readdirSync(this.dir)) {
      if (/^\d{8}$/.test(name)) max = Math.max(max, Number(name))
    }
    return max
  }

  read(epoch: number): EpochRecord | undefined {
    const cached = this.cache.get(epoch)
    if (cached) return cached
    let buf: Buffer
    try {
      buf = fs.readFileSync(this.file(epoch))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    const decoded = decodeEpochFile(buf)
    if (!decoded) throw new Error(`epoch file ${this.file(epoch)} is malformed (${buf.length} bytes)`)
    return { epoch, ...decoded }
  }

  /** The raw file, as GET_EPOCH sends it. */
  readRaw(epoch: number): Buffer | undefined {
    const cached = this.cache.get(epoch)
    if (cached) return encodeEpochFile(cached.nodes, cached.timeSec)
    try {
      return fs.readFileSync(this.file(epoch))
    } catch {
      return undefined
    }
  }

  async removeAll(): Promise<void> {
    this.cache.clear()
    for (const name of await fsp.readdir(this.dir)) await fsp.rm(path.join(this.dir, name), { force: true })
  }
}
