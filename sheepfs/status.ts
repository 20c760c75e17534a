// The informational files (cluster/info, vdi/list, node/list, node/info) hold what dog prints:
// the dog command runs in this process through dog's own dispatcher and formatting code
// (runDog over a DogSession of its own, closed afterwards), with its stdout captured. A failed command (dog's exit status is
// not 0) becomes EIO, with dog's stderr in the log.
import { Readable } from 'node:stream'
import type { DogIo } from '../dog/cli.js'
import { runDog } from '../dog/runner.js'
import { openDogSession } from '../dog/runtime.js'
import { FsError } from './errno.js'

/** Largest output kept for one status file; more is EFBIG. */
export const STATUS_OUTPUT_MAX_BYTES = 64 * 1024 * 1024
/** Longest time one dog command may take before it counts as failed. */
export const STATUS_COMMAND_TIMEOUT_MS = 60_000
/** Longest stderr text kept for the log. */
const STATUS_STDERR_MAX_CHARS = 4096

export interface SheepTarget {
  host: string
  port: number
}

/** One captured run of dog: its stdout bytes (stderr went to `onStderr`). */
export interface StatusSnapshot {
  content: Buffer
  generatedAtMs: number
}

/**
 * Runs `dog <args> -a HOST -p PORT` in-process and answers its stdout. Throws FsError EIO when
 * dog fails or takes too long, EFBIG when it prints too much.
 */
export async function runDogInProcess(args: readonly string[], target: SheepTarget): Promise<StatusSnapshot> {
  const chunks: Buffer[] = []
  let stdoutBytes = 0
  let overflow = false
  let stderr = ''
  const io: DogIo = {
    stdout: {
      write(chunk: string | Uint8Array) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk)
        if (stdoutBytes + bytes.length > STATUS_OUTPUT_MAX_BYTES) {
          overflow = true
          return true
        }
        chunks.push(bytes)
        stdoutBytes += bytes.length
        return true
      },
    },
    stderr: {
      write(chunk: string | Uint8Array) {
        if (stderr.length < STATUS_STDERR_MAX_CHARS) stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
        return true
      },
    },
    // no SHEEPDOG_DOG_* variables: the address comes from -a/-p only, and nothing is logged
    env: {},
    stdin: Readable.from([]),
    argv0: 'dog',
    stdoutIsTty: false,
  }
  const argv = [...args, '-a', target.host, '-p', String(target.port)]
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FsError('EIO', `dog ${args.join(' ')} took longer than ${STATUS_COMMAND_TIMEOUT_MS} ms`)), STATUS_COMMAND_TIMEOUT_MS)
  })
  const session = openDogSession()
  let status: number
  try {
    status = await Promise.race([runDog(argv, session.commands, io, { loadNodeList: session.loadNodeList }), timeout])
  } catch (error) {
    if (error instanceof FsError) throw error
    throw new FsError('EIO', `dog ${args.join(' ')} failed: ${error instanceof Error ? error.message : String(error)}`)
  } finally {
    clearTimeout(timer)
    // the connections dog opened for this command go with it
    session.close()
  }
  if (overflow) throw new FsError('EFBIG', `dog ${args.join(' ')} printed more than ${STATUS_OUTPUT_MAX_BYTES} bytes`)
  if (status !== 0) {
    throw new FsError('EIO', `dog ${args.join(' ')} exited ${status}: ${stderr.trim().replace(/\n/g, '; ')}`)
  }
  return { content: Buffer.concat(chunks), generatedAtMs: Date.now() }
}
