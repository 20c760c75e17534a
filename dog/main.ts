// dog's process entry: runDog over a fresh DogSession (runtime.ts) with the real process I/O,
// then the session's connections are closed and dog exits with the command's status.
import { EXIT_SYSFAIL } from './cli.js'
import { runDog } from './runner.js'
import { SdError } from '../lib/errors.js'
import { openDogSession } from './runtime.js'

/** Resolves once everything written so far to `stream` has been handed to the system. */
function flushed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.write('', () => resolve())) stream.once('drain', () => resolve())
  })
}

/** Runs dog with the process's arguments, streams and environment, then exits with its status. */
export async function main(argv: readonly string[]): Promise<void> {
  // a reader that went away (`dog vdi read … | head`) ends dog, as SIGPIPE ends the original
  process.stdout.on('error', () => process.exit(EXIT_SYSFAIL))
  const session = openDogSession()
  let status: number
  try {
    status = await runDog(
      argv,
      session.commands,
      {
        stdout: process.stdout,
        stderr: process.stderr,
        env: process.env,
        stdin: process.stdin,
        argv0: 'dog',
        stdoutIsTty: process.stdout.isTTY === true,
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
  await flushed(process.stdout)
  await flushed(process.stderr)
  process.exit(status)
}
