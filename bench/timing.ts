// Timing helpers shared by the benches: a program run with its stdin and stdout on files, timed,
// and the SHA-1 of a file read in pieces (the bytes read back are checked against those written).
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { programEnv } from '../harness/sheep.js'

const MiB = 1024 * 1024

/** Runs a command with stdin/stdout redirected to files; returns elapsed seconds. */
export function timed(cmd: string, args: string[], io: { stdin?: string; stdout?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const stdin = io.stdin ? fs.openSync(io.stdin, 'r') : 'ignore'
    const stdout = io.stdout ? fs.openSync(io.stdout, 'w') : 'ignore'
    const start = process.hrtime.bigint()
    const child = spawn(cmd, args, { stdio: [stdin, stdout, 'inherit'], env: programEnv() })
    child.on('error', reject)
    child.on('close', (code) => {
      if (typeof stdin === 'number') fs.closeSync(stdin)
      if (typeof stdout === 'number') fs.closeSync(stdout)
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))
      else resolve(Number(process.hrtime.bigint() - start) / 1e9)
    })
  })
}

export function sha1File(file: string): string {
  const h = crypto.createHash('sha1')
  const fd = fs.openSync(file, 'r')
  const buf = Buffer.allocUnsafe(8 * MiB)
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null)
    if (n === 0) break
    h.update(buf.subarray(0, n))
  }
  fs.closeSync(fd)
  return h.digest('hex')
}
