// The confirmation prompt of destructive subcommands (spec §2.5): the question on stdout, one
// short answer line from stdin read as the original's fgets reads it, and only `yes…` goes on.
// Input after the answer stays unread, for the subcommands that read data from stdin too.

import type { DogIo } from './cli.js'

/** The original reads the answer with fgets into an 8-byte buffer: 7 characters at most. */
const ANSWER_MAX_BYTES = 7

/**
 * Reads one line as C fgets(buffer, maxBytes + 1) does: up to and including
 * a newline, at most maxBytes bytes. Null at end of input. Unread input is
 * pushed back, and the stream is paused afterwards.
 */
export function readInputLine(stream: NodeJS.ReadableStream, maxBytes: number): Promise<string | null> {
  const readable = stream as NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean }
  if (readable.readableEnded || readable.destroyed) return Promise.resolve(null)
  return new Promise((resolve) => {
    let collected = Buffer.alloc(0)
    const finish = (line: string | null, rest?: Buffer): void => {
      stream.removeListener('data', onData)
      stream.removeListener('end', onEnd)
      stream.removeListener('error', onError)
      stream.pause()
      if (rest !== undefined && rest.length > 0) stream.unshift(rest)
      resolve(line)
    }
    const onData = (chunk: Buffer | string): void => {
      collected = Buffer.concat([collected, typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk])
      const newline = collected.indexOf(0x0a)
      let lineLength = -1
      if (newline >= 0) lineLength = Math.min(newline + 1, maxBytes)
      else if (collected.length >= maxBytes) lineLength = maxBytes
      if (lineLength >= 0) finish(collected.subarray(0, lineLength).toString('latin1'), collected.subarray(lineLength))
    }
    const onEnd = (): void => finish(collected.length > 0 ? collected.toString('latin1') : null)
    const onError = (): void => finish(null)
    stream.on('data', onData)
    stream.on('end', onEnd)
    stream.on('error', onError)
    stream.resume()
  })
}

/**
 * Prints `prompt` (no newline added) to stdout and reads one answer line of
 * at most 7 characters from stdin: true only if it starts with `yes`, any
 * case. End of input (or no stdin) means no. A handler returns EXIT_SUCCESS
 * when this is false.
 */
export async function confirm(prompt: string, io: Pick<DogIo, 'stdout' | 'stdin'>): Promise<boolean> {
  io.stdout.write(prompt)
  if (io.stdin === undefined) return false
  const answer = await readInputLine(io.stdin, ANSWER_MAX_BYTES)
  return answer !== null && answer.slice(0, 3).toLowerCase() === 'yes'
}
