// sheep as a service (issue 17): SIGHUP makes a real sheep reopen its sheep.log, as logrotate's
// postrotate asks it to (the renamed file keeps the old lines, new lines land in a new file);
// and a sheep started in the foreground with NOTIFY_SOCKET reports READY=1 with its own pid on
// that socket, as systemd's Type=notify expects: through systemd-notify on a socket path, and
// through the python3 fallback on an abstract socket (NOTIFY_SOCKET=@name). Node has no Unix
// datagram sockets, so the test's listener is a python3 one.
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { SHEEP_BIN, dog, freePort, programEnv, startSheep, stopSheep, tempDir, trackPid, untrackPid, waitFor } from '../../harness/sheep.js'

const LISTEN_TIMEOUT_S = 60

/** A python3 listener on a Unix datagram socket that prints the first message as JSON and exits. */
const PYTHON_LISTENER = [
  'import socket,sys,json',
  's=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)',
  // '@name' is the abstract name '\\0name', as sd_notify(3) reads NOTIFY_SOCKET
  'a=sys.argv[1]',
  "s.bind('\\0'+a[1:] if a.startswith('@') else a)",
  'print("listening",flush=True)',
  `s.settimeout(${LISTEN_TIMEOUT_S})`,
  'print(json.dumps(s.recv(4096).decode()),flush=True)',
].join('\n')

t.test('SIGHUP reopens sheep.log at its path', async (t) => {
  const s = await startSheep()
  t.teardown(() => stopSheep(s))
  const logFile = path.join(s.dir, 'sheep.log')
  const rotated = `${logFile}.1`
  fs.renameSync(logFile, rotated)
  const before = fs.readFileSync(rotated, 'utf8')
  t.match(before, /started in/, 'the start line is in the file that was renamed')

  process.kill(s.pid, 'SIGHUP')
  t.ok(await waitFor(() => fs.existsSync(logFile), 10_000), 'a new sheep.log appears')
  t.ok(await waitFor(() => fs.readFileSync(logFile, 'utf8').includes('log file reopened')), 'sheep says so in the new file')
  // a line that only a live daemon writes after the reopen: the cluster format's
  t.equal((await dog(['cluster', 'format', '-c', '1'], { port: s.port })).status, 0)
  t.ok(await waitFor(() => /formatted: copies 1/.test(fs.readFileSync(logFile, 'utf8'))), 'lines logged later land in the new file')
  t.notMatch(fs.readFileSync(rotated, 'utf8').slice(before.length), /formatted/, 'and not in the renamed one')
  t.ok(fs.readFileSync(path.join(s.dir, 'lock'), 'utf8').trim() === String(s.pid), 'the same daemon is still running')
})

/**
 * Starts a sheep in the foreground with NOTIFY_SOCKET=`socketName` (a path, or '@' and an
 * abstract name) and `path` as its PATH, and checks the one message it sends.
 */
async function checkNotify(t: Test, socketName: string, dir: string, searchPath: string): Promise<void> {
  const listener = spawn('python3', ['-c', PYTHON_LISTENER, socketName], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  listener.stdout.on('data', (b: Buffer) => (out += b.toString()))
  t.teardown(() => {
    if (listener.exitCode === null) listener.kill()
  })
  t.ok(await waitFor(() => out.includes('listening'), 10_000), 'the test listens on its own socket')

  const port = await freePort()
  const storeDir = path.join(dir, 'store')
  const sheep = spawn(SHEEP_BIN, ['-f', '-n', '-p', String(port), '-c', `local:${path.join(dir, 'shm')}`, storeDir], {
    stdio: 'ignore',
    env: programEnv({ NOTIFY_SOCKET: socketName, PATH: searchPath }),
  })
  const pid = sheep.pid as number
  trackPid(pid)
  t.teardown(async () => {
    untrackPid(pid)
    if (sheep.exitCode === null) {
      sheep.kill('SIGTERM')
      await waitFor(() => sheep.exitCode !== null, 10_000)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })

  t.ok(await waitFor(() => out.split('\n').length > 2, 30_000), 'a message arrives')
  const message = JSON.parse(out.split('\n')[1] as string) as string
  const fields = Object.fromEntries(
    message
      .split('\n')
      .filter(Boolean)
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  )
  t.equal(fields.READY, '1', 'READY=1')
  t.equal(fields.MAINPID, String(pid), 'in the name of the sheep process itself')
  t.match(fields.STATUS ?? '', new RegExp(`port ${port}`), `with a status line: ${fields.STATUS}`)
  t.equal(sheep.exitCode, null, 'sheep keeps running in the foreground')
  const r = await dog(['node', 'list'], { port })
  t.equal(r.status, 0, 'and serves')
}

/** The first executable `name` on PATH. */
function onPath(name: string): string | undefined {
  return (process.env.PATH ?? '')
    .split(':')
    .filter(Boolean)
    .map((dir) => path.join(dir, name))
    .find((file) => isExecutable(file))
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

const needsPython = { skip: onPath('python3') !== undefined ? false : 'needs python3 for a Unix datagram listener' }

t.test('sd_notify: READY=1 with sheep’s pid on a NOTIFY_SOCKET path (systemd-notify)', needsPython, async (t) => {
  if (onPath('systemd-notify') === undefined) t.comment('no systemd-notify here: sheep uses python3')
  const dir = tempDir('sheep-notify-')
  await checkNotify(t, path.join(dir, 'notify.sock'), dir, process.env.PATH ?? '')
})

t.test('sd_notify: an abstract NOTIFY_SOCKET, without systemd-notify (the python3 way)', needsPython, async (t) => {
  const dir = tempDir('sheep-notify-')
  // a PATH with node and python3 only, as on a machine without systemd-notify
  const bin = path.join(dir, 'bin')
  fs.mkdirSync(bin)
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  // the interpreter itself: python3 on PATH may be a wrapper (pyenv's shim) that needs more of PATH
  const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim()
  fs.symlinkSync(python, path.join(bin, 'python3'))
  await checkNotify(t, `@sheep-notify-test-${process.pid}`, dir, bin)
})
