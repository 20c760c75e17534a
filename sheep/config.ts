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
  private writes: Promise<void> = Promise.resolve()

  constructor(baseDir: string) {
    this.dir = path.join(baseDir, 'epoch')
  }

  init(): void {
    fs.mkdirSync(this.dir, { recursive: true })
  }

  private file(epoch: number): string {
    return path.join(this.dir, String(epoch).padStart(8, '0'))
  }

  /** Records an epoch now and persists it after the epochs recorded before it. */
  record(epoch: number, nodes: readonly SdNode[], timeSec: bigint): Promise<void> {
    this.cache.set(epoch, { epoch, nodes: [...nodes], timeSec })
    const write = this.writes.then(() => this.write(epoch, nodes, timeSec))
    this.writes = write.catch(() => undefined)
    return write
  }

  /** Resolves when every recorded epoch is on disk. */
  flushed(): Promise<void> {
    return this.writes
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

  private async write(epoch: number, nodes: readonly SdNode[], timeSec: bigint): Promise<void> {
    await writeFileAtomic(this.file(epoch), encodeEpochFile(nodes, timeSec))
  }

  async removeAll(): Promise<void> {
    await this.writes
    this.cache.clear()
    for (const name of await fsp.readdir(this.dir)) await fsp.rm(path.join(this.dir, name), { force: true })
  }
}
