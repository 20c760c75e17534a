// Loads the capture of the original dog talking to an original 3-node cluster
// (original-dog-session.jsonl.gz, found beside the repository as CI lays it out): the commands that were run, what each
// printed, and every frame with its header and payload, so tests can replay or compare them.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync, inflateSync } from 'node:zlib'

/**
 * The capture: SHEEPDOG_FIXTURE, else `shared/fixtures/` beside the repository (looked up from
 * test/helpers/ and, when compiled, from dist/test/helpers/).
 */
export const FIXTURE_PATH = process.env.SHEEPDOG_FIXTURE ?? findFixture()

function findFixture(): string {
  const candidates = ['../../../shared', '../../../../shared'].map((up) =>
    fileURLToPath(new URL(`${up}/fixtures/original-dog-session.jsonl.gz`, import.meta.url)),
  )
  return candidates.find((p) => existsSync(p)) ?? candidates[0]
}

/** The capture keeps only this many characters of each command's stdout. */
export const FIXTURE_STDOUT_LIMIT = 3000

/** One frame as captured: the 48-byte header and the payload that followed it. */
export class FixtureFrame {
  private decoded: Buffer | undefined

  constructor(
    readonly dir: 'req' | 'rsp',
    /** Connection number of the capture: frames of one dog command share one connection. */
    readonly conn: number,
    readonly header: Buffer,
    /** Payload length in bytes. */
    readonly length: number,
    /** 1-based line of the capture file, for messages. */
    readonly line: number,
    private readonly encoded: { hex: string } | { zlib: string } | undefined,
  ) {}

  /** The payload bytes (inflated on first use: some are 12.5 MB). */
  get payload(): Buffer {
    if (this.decoded === undefined) {
      const e = this.encoded
      this.decoded = e === undefined ? Buffer.alloc(0) : 'hex' in e ? Buffer.from(e.hex, 'hex') : inflateSync(Buffer.from(e.zlib, 'base64'))
      if (this.decoded.length !== this.length) {
        throw new Error(`fixture line ${this.line}: payload is ${this.decoded.length} bytes, len says ${this.length}`)
      }
    }
    return this.decoded
  }

  get opcode(): number {
    return this.header[1]
  }
}

/** A request and the response that answered it (dog has one request outstanding per connection). */
export interface FixtureExchange {
  req: FixtureFrame
  rsp: FixtureFrame | undefined
}

export interface FixtureCommand {
  /** The command line as recorded, e.g. `dog vdi write alpha 0 6M (stdin: 6 MiB, byte i = i mod 251)`. */
  line: string
  /** Arguments after `dog`, without the parenthesised stdin note. */
  argv: string[]
  /** The parenthesised note about stdin, if any (`stdin: 6 MiB, byte i = i mod 251`). */
  stdinNote: string | undefined
  /** Exit status, or undefined when the capture has no exit record for the command. */
  exitCode: number | undefined
  /** What dog printed (the first FIXTURE_STDOUT_LIMIT characters), undefined without exit record. */
  stdout: string | undefined
  /** False when stdout was cut at FIXTURE_STDOUT_LIMIT characters. */
  stdoutComplete: boolean
  frames: FixtureFrame[]
  exchanges: FixtureExchange[]
}

export interface Fixture {
  commands: FixtureCommand[]
  frames: FixtureFrame[]
  exchanges: FixtureExchange[]
}

const cache = new Map<string, Fixture>()

/** Parses the capture (cached per path); payloads stay compressed until read. */
export function loadFixture(path: string = FIXTURE_PATH): Fixture {
  const cached = cache.get(path)
  if (cached) return cached
  const text = gunzipSync(readFileSync(path)).toString('utf8')
  const commands: FixtureCommand[] = []
  const frames: FixtureFrame[] = []
  const exchanges: FixtureExchange[] = []
  const openRequests = new Map<number, FixtureExchange>()
  let current: FixtureCommand | undefined

  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return
    const line = i + 1
    const o = JSON.parse(raw) as Record<string, unknown>
    if (typeof o.cmd === 'string') {
      current = newCommand(o.cmd)
      commands.push(current)
      return
    }
    if (typeof o.cmd_exit === 'number') {
      if (!current) throw new Error(`fixture line ${line}: exit record without a command`)
      current.exitCode = o.cmd_exit
      current.stdout = typeof o.stdout === 'string' ? o.stdout : ''
      current.stdoutComplete = current.stdout.length < FIXTURE_STDOUT_LIMIT
      return
    }
    if (o.dir !== 'req' && o.dir !== 'rsp') throw new Error(`fixture line ${line}: unknown record`)
    const header = Buffer.from(String(o.hdr), 'hex')
    if (header.length !== 48) throw new Error(`fixture line ${line}: header is ${header.length} bytes`)
    const encoded = typeof o.data === 'string' && o.data.length > 0 ? { hex: o.data } : typeof o.zdata === 'string' ? { zlib: o.zdata } : undefined
    const frame = new FixtureFrame(o.dir, Number(o.conn), header, Number(o.len), line, encoded)
    frames.push(frame)
    current?.frames.push(frame)
    if (frame.dir === 'req') {
      const exchange: FixtureExchange = { req: frame, rsp: undefined }
      openRequests.set(frame.conn, exchange)
      exchanges.push(exchange)
      current?.exchanges.push(exchange)
    } else {
      const exchange = openRequests.get(frame.conn)
      if (!exchange) throw new Error(`fixture line ${line}: response without a request on conn ${frame.conn}`)
      exchange.rsp = frame
      openRequests.delete(frame.conn)
    }
  })
  const fixture = { commands, frames, exchanges }
  cache.set(path, fixture)
  return fixture
}

function newCommand(line: string): FixtureCommand {
  const note = /\s*\(([^)]*)\)\s*$/.exec(line)
  const bare = note ? line.slice(0, note.index) : line
  const words = bare.trim().split(/\s+/)
  return {
    line,
    argv: words[0] === 'dog' ? words.slice(1) : words,
    stdinNote: note?.[1],
    exitCode: undefined,
    stdout: undefined,
    stdoutComplete: false,
    frames: [],
    exchanges: [],
  }
}

/** The first command whose argv starts with the given words, e.g. `findCommand(fx, 'vdi', 'write')`. */
export function findCommand(fixture: Fixture, ...words: string[]): FixtureCommand {
  const found = findCommands(fixture, ...words)[0]
  if (!found) throw new Error(`no fixture command starts with: dog ${words.join(' ')}`)
  return found
}

/** Every command whose argv starts with the given words, in capture order. */
export function findCommands(fixture: Fixture, ...words: string[]): FixtureCommand[] {
  return fixture.commands.filter((c) => words.every((w, i) => c.argv[i] === w))
}

/** Exchanges (of the whole capture, or of one command) whose request has this opcode. */
export function exchangesOf(source: { exchanges: FixtureExchange[] }, opcode: number): FixtureExchange[] {
  return source.exchanges.filter((e) => e.req.opcode === opcode)
}
