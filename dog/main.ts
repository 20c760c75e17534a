// dog's process entry: runDog over a fresh DogSession (runtime.ts) with the real process I/O,
// then the session's connections are closed and dog exits with the command's status.
// Standard output to a pipe or a file is gathered into blocks (a terminal is written at once):
// what a command prints in one go leaves in one write, and whatever is gathered leaves as soon
// as dog waits for something (a reply, the next second of `node stat -w`), so a reader sees
// each report when it is complete. A reader that went away (`dog vdi list | head -1`) ends dog
// as a finished command, not as a failure.
import { EventEmitter } from 'node:events'
import { EXIT_SUCCESS, EXIT_SYSFAIL, type DogOutputStream } from './cli.js'
import { namedSubcommand, runDog } from './runner.js'
import { SdError } from '../lib/errors.js'
import { keepBuffersInHeap } from '../lib/malloc.js'
import { openDogSession } from './runtime.js'

/** What dog gathers before it writes to a pipe or a file (a pipe's capacity on Linux). */
const STDOUT_BLOCK_BYTES = 64 * 1024

/** Resolves once everything written so far to `stream` has been handed to the system. */
function flushed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.write('', () => resolve())) stream.once('drain', () => resolve())
  })
}

/**
 * Full buffering in front of process.stdout: writes gather until a block is full, then go out
 * together; `write` answers false while the stream behind is full and emits 'drain' after, so
 * the commands that stream data (`vdi read`, `vdi backup`) keep their backpressure.
 */
class StdoutBuffer extends EventEmitter implements DogOutputStream {
  private chunks: Buffer[] = []
  private bytes = 0
  private flushScheduled = false

  constructor(private readonly target: NodeJS.WritableStream) {
    super()
  }

  write(chunk: string | Uint8Array): boolean {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (bytes.length === 0) return true
    this.chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))
    this.bytes += bytes.length
    if (this.bytes >= STDOUT_BLOCK_BYTES) return this.flush()
    if (!this.flushScheduled) {
      // once the command yields (it waits for a reply, a timer, input), what it printed goes out
      this.flushScheduled = true
      setImmediate(() => {
        this.flushScheduled = false
        this.flush()
      })
    }
    return true
  }

  /** Hands what is gathered to the stream behind; false while it is full ('drain' follows). */
  flush(): boolean {
    if (this.bytes === 0) return true
    const block = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks)
    this.chunks = []
    this.bytes = 0
    if (this.target.write(block)) return true
    this.target.once('drain', () => this.emit('drain'))
    return false
  }
}

/** Runs dog with the process's arguments, streams and environment, then exits with its status. */
export async function main(argv: readonly string[]): Promise<void> {
  const session = openDogSession()
  // a command that moves a VDI's bytes: large buffers kept in the heap, as in the daemons (`dog
  // vdi write` of 512 MiB to 3 sheep: ~190 MB/s with glibc's defaults, ~255 with these)
  if (namedSubcommand(argv, session.commands)?.movesData) keepBuffersInHeap()
  let status: number | undefined
  const stdoutIsTty = process.stdout.isTTY === true
  const stdout = stdoutIsTty ? process.stdout : new StdoutBuffer(process.stdout)
  // a reader that went away (`dog vdi list | head -1`) ends dog: after the command, with its
  // status; before, as a command that printed all it had to
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    session.close()
    process.exit(error.code === 'EPIPE' ? (status ?? EXIT_SUCCESS) : EXIT_SYSFAIL)
  })
  try {
    status = await runDog(
      argv,
      session.commands,
      {
        stdout,
        stderr: process.stderr,
        env: process.env,
        stdin: process.stdin,
        argv0: 'dog',
        stdoutIsTty,
        columns: process.stdout.columns || undefined,
      },
      { loadNodeList: session.loadNodeList },
    )
  } catch (error) {
    // a failure no handler expected: report it the way the original's crash handler does
    const reason = error instanceof Error ? error.message : String(error)
    process.stderr.write(error instanceof SdError && error.isTransport ? `${reason}\n` : `dog exits unexpectedly (${reason}).\n`)
    status = EXIT_SYSFAIL
  }
  session.close()
  if (stdout instanceof StdoutBuffer) stdout.flush()
  await flushed(process.stdout)
  await flushed(process.stderr)
  process.exit(status)
}
