// sheep as a service (issue 17): SIGHUP makes a real sheep reopen its sheep.log, as logrotate's
// postrotate asks it to (the renamed file keeps the old lines, new lines land in a new file);
// and a sheep started in the foreground with NOTIFY_SOCKET reports READY=1 with its own pid on
// that socket, as systemd's Type=notify expects. Node has no Unix datagram sockets, so the
// test's listener is a python3 one.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SHEEP_BIN, dog, freePort, programEnv, startSheep, stopSheep, tempDir, trackPid, untrackPid, waitFor } from '../../harness/sheep.js'

const LISTEN_TIMEOUT_S = 60

/** A python3 listener on a Unix datagram socket that prints the first message as JSON and exits. */
const PYTHON_LISTENER = [
  'import socket,sys,json',
  's=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)',
  's.bind(sys.argv[1])',
  'print("listening",flush=True)',
  `s.settimeout(${LISTEN_TIMEOUT_S})`,
  'print(json.dumps(s.recv(4096).decode()),flush=True)',
].join('\n')

const hasPython = (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && fs.existsSync(path.join(dir, 'python3')))

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

t.test('sd_notify: READY=1 with sheep’s pid on NOTIFY_SOCKET', { skip: hasPython ? false : 'needs python3 for a Unix datagram listener' }, async (t) => {
  const dir = tempDir('sheep-notify-')
  const socketPath = path.join(dir, 'notify.sock')
  const listener = spawn('python3', ['-c', PYTHON_LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] })
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
    env: programEnv({ NOTIFY_SOCKET: socketPath }),
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
})
