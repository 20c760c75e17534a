// sheep's command line as the original's (issue 12, item 14 and the port of item 16): options
// the original accepts start the daemon — -j (checked, then run without a journal), -w/-x (the
// I/O thread pool of the daemon, through the environment it starts with), -W, -u (the stock
// systemd unit passes it), -D — each leaving a line in the log; the values the original refuses
// are refused with its messages; --log dst=syslog sends the log to the system log through
// logger(1); `sheep -p 65535` serves on port 65535; -i is read as the original reads it (the
// I/O NIC itself: io-nic.test.ts).
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t, { type Test } from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { getNodeList } from '../../lib/sheep-api.js'
import { nodeAddrText } from '../../lib/structs.js'
import { MALLOC_TUNING } from '../../lib/daemon.js'
import { parseSheepArgs } from '../../sheep/options.js'
import { SHEEP_BIN, dog, freePort, isAlive, programEnv, startSheep, stopSheep, tempDir, trackPid, waitFor, type SheepProcess } from '../../harness/sheep.js'

/** What parseSheepArgs makes of a command line: the options, or how it exits. */
function parsed(...argv: string[]) {
  return parseSheepArgs([...argv, '/tmp/unused'])
}

/** The error sheep prints for a command line it refuses (exit 1). */
function refusal(...argv: string[]): string | undefined {
  const outcome = parsed(...argv)
  return outcome.kind === 'exit' && outcome.code === 1 ? outcome.stderr : undefined
}

/** The environment a process started with (/proc/PID/environ). */
function initialEnvironment(pid: number): Map<string, string> {
  const entries = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)
  return new Map(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]))
}

/** Starts a daemonizing sheep with `args` and `env`; the pid it wrote into PATH/lock. */
function startSheepWith(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string; pid?: number } {
  const r = spawnSync(SHEEP_BIN, [...args, dir], { encoding: 'utf8', timeout: 60_000, env: programEnv(env) })
  if (r.status !== 0) return { status: r.status, stderr: r.stderr }
  const pid = Number(fs.readFileSync(path.join(dir, 'lock'), 'utf8').trim())
  trackPid(pid)
  return { status: r.status, stderr: r.stderr, pid }
}

t.test('the original values are checked as the original checks them', async (t) => {
  t.equal(refusal('-j', 'dir=/j'), 'you must specify size for journal\n')
  t.equal(refusal('-j', 'size=10M'), 'invalid size 10M, must be bigger than 64(M)\n')
  t.equal(
    refusal('-j', 'size=1X'),
    "Invalid size '1X'\nYou may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.\n",
  )
  t.equal(refusal('-j', 'size=1G,bogus'), 'invalid option bogus\n')
  t.equal(refusal('-w', 'io=4,threads=2'), 'invalid option threads=2\n')
  t.equal(refusal('-x', '0'), "Invalid number of threads '0': must be an integer between 1 and 4294967295\n")
  t.equal(refusal('-x', 'many'), "Invalid number of threads 'many': must be an integer between 1 and 4294967295\n")
  t.equal(refusal('-l', 'dir=/var/log,dst=syslog'), 'logdir (/var/log) is specified but logging destination is syslog\n')
  t.equal(refusal('-p', '65536'), "Invalid port number '65536'\n")
  t.equal(refusal('-p', '0'), "Invalid port number '0'\n")
  t.equal(refusal('-p', '7000x'), "Invalid port number '7000x'\n")
  const lenient = parsed('-p', '+7001', '-V', ' 64', '-z', '4294967295')
  t.same(
    lenient.kind === 'run' && [lenient.options.port, lenient.options.vnodes, lenient.options.zone],
    [7001, 64, 4294967295],
    'read as str_to_u16/u32 read them',
  )

  const accepted = parsed('-j', 'size=1G,dir=/journal,skip', '-w', 'io=6,net=2,remove_peer=3', '-W', '-x', '9', '-u', '-D', '-p', '65535')
  t.equal(accepted.kind, 'run')
  if (accepted.kind !== 'run') return
  t.equal(accepted.options.port, 65535)
  t.equal(accepted.options.ioThreadPoolSize, 6, '-w io= wins over -x')
  t.same(
    accepted.options.notices.map((n) => n.message.split(' ')[0]),
    ['this', 'work', 'wildcard', 'direct', 'upgrade'],
    'a notice for -j, the other work queues, -W, -D and -u',
  )
  t.match(accepted.options.notices[1]?.message, /-w net=2,remove_peer=3/)
  const onlyX = parsed('-x', '2000')
  t.equal(onlyX.kind === 'run' && onlyX.options.ioThreadPoolSize, 1024, '-x alone sizes the pool, at most libuv’s 1024')
  const usage = parseSheepArgs(['-h'])
  const usageLines = (usage.kind === 'exit' ? (usage.stdout ?? '') : '').split('\n')
  const row = (letter: string, name: string, help: string) => `  -${letter}, --${name.padEnd(18)}${help}`
  t.ok(usageLines.includes(row('u', 'upgrade', 'upgrade to the latest data layout')), 'the usage lists -u')
  const wq = usageLines.indexOf(row('w', 'wq-threads', 'specify a number of threads for workqueue'))
  t.same(
    usageLines.slice(wq, wq + 3),
    [
      row('w', 'wq-threads', 'specify a number of threads for workqueue'),
      row('W', 'wildcard-recovery', 'wildcard recovery for first time'),
      row('x', 'max-dynamic-threads', 'specify the maximum number of threads for dynamic workqueue'),
    ],
    'and -w, -W, -x where the original does',
  )
})

t.test('-i host=ADDR[,port=PORT] is read as the original reads it', async (t) => {
  const io = (...argv: string[]) => {
    const outcome = parsed(...argv)
    return outcome.kind === 'run' ? outcome.options.io : outcome
  }
  t.same(io('-i', 'host=192.168.1.1,port=7002'), { host: '192.168.1.1', port: 7002 })
  t.same(io('--ioaddr', 'host=10.0.0.5'), { host: '10.0.0.5', port: 7000 }, 'the port defaults to 7000')
  t.same(io('-i', 'port=7003,host=::1'), { host: '::1', port: 7003 }, 'in any order, IPv6 too')
  t.same(io('-i', 'host=10.0.0.5,port=7002x'), { host: '10.0.0.5', port: 7002 }, 'the port as sscanf("%u") reads it')
  t.equal(io('-p', '7001'), undefined, 'no I/O NIC without -i')
  t.equal(refusal('-i', 'port=7002'), "Bad addr: '(null)'\n")
  t.equal(refusal('-i', 'host=nowhere'), "Bad addr: 'nowhere'\n")
  t.equal(refusal('-i', 'host=10.0.0.5,port=x'), "Bad port 'x'\n")
  t.equal(refusal('-i', 'host=10.0.0.5,mtu=9000'), 'invalid option mtu=9000\n')
  const help = parseSheepArgs(['-i'])
  t.same(
    help,
    {
      kind: 'exit',
      code: 1,
      stdout:
        'Example:\n\t$ sheep -i host=192.168.1.1,port=7002 ...\nThis tries to add a dedicated IO NIC of 192.168.1.1:7002 to transfer data.\nIf IO NIC is down, sheep will fallback to non IO NIC to transfer data.\n',
    },
    'without an argument: the original help text',
  )
})

t.test('a sheep started with the options of the original serves, and says what it made of them', async (t) => {
  const dir = tempDir()
  const port = await freePort()
  const args = ['-p', String(port), '-n', '-c', `local:${path.join(dir, 'shm')}`, '-j', 'size=64M', '-w', 'io=3,gway=8', '-W', '-x', '16', '-u', '-D']
  // a malloc setting of the caller's own is kept; the other is the daemon's default
  const started = startSheepWith(dir, args, { MALLOC_TRIM_THRESHOLD_: '1048576' })
  t.equal(started.status, 0, started.stderr)
  const pid = started.pid as number
  t.teardown(async () => {
    await stopSheep({ pid, port, dir, args })
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const environment = initialEnvironment(pid)
  t.equal(environment.get('UV_THREADPOOL_SIZE'), '3', 'the daemon started with the pool size of -w io=3')
  t.equal(environment.get('MALLOC_MMAP_THRESHOLD_'), String(MALLOC_TUNING.MALLOC_MMAP_THRESHOLD_), 'and with buffers kept in the heap')
  t.equal(environment.get('MALLOC_TRIM_THRESHOLD_'), '1048576', 'but the trim threshold it was given')
  const format = await dog(['cluster', 'format', '-c', '1'], { port })
  t.equal(format.status, 0, format.stderr)
  const list = await dog(['node', 'list', '-r'], { port })
  t.equal(list.stdout, `0 127.0.0.1:${port} 128 ${0x0100007f}\n`)
  const log = fs.readFileSync(path.join(dir, 'sheep.log'), 'utf8')
  for (const line of [
    /WARN {2}this sheep has no journal \(-j\)/,
    /WARN {2}work queue threads \(-w gway=8\) have no meaning here/,
    /WARN {2}wildcard recovery \(-W\) is not supported/,
    /WARN {2}direct I\/O \(-D\) is not supported by the plain store/,
    /INFO {2}upgrade \(-u\): the store already has the only data layout/,
    /INFO {2}I\/O thread pool: 3 threads/,
  ]) {
    t.match(log, line)
  }
})

t.test('-f keeps the pool it started with, and says so', async (t) => {
  const dir = tempDir()
  const port = await freePort()
  const child = spawn(SHEEP_BIN, ['-f', '-p', String(port), '-n', '-c', `local:${path.join(dir, 'shm')}`, '-w', 'io=5', dir], {
    env: programEnv({ MALLOC_MMAP_THRESHOLD_: undefined, MALLOC_TRIM_THRESHOLD_: undefined }),
    stdio: 'ignore',
  })
  trackPid(child.pid as number)
  t.teardown(async () => {
    await stopSheep({ pid: child.pid as number, port, dir, args: [] })
    fs.rmSync(dir, { recursive: true, force: true })
  })
  // the two lines are logged one after the other, but may reach the file in separate writes
  const logged = (pattern: RegExp) => fs.existsSync(path.join(dir, 'sheep.log')) && pattern.test(fs.readFileSync(path.join(dir, 'sheep.log'), 'utf8'))
  t.ok(await waitFor(() => logged(/I\/O thread pool/) && logged(/malloc: /)), 'the log says what became of -w io=5')
  const log = fs.readFileSync(path.join(dir, 'sheep.log'), 'utf8')
  t.match(log, /WARN {2}I\/O thread pool: the pool started before the options were read; .*UV_THREADPOOL_SIZE=5/)
  t.match(
    log,
    /INFO {2}malloc: large buffers kept in the heap \(set with mallopt/,
    'and that it set the malloc settings the daemon copy gets from its environment',
  )
})

/**
 * Starts a sheep in DIR/store with `options` and, first on its PATH, a logger(1) that is the
 * shell script `loggerScript`; it is stopped and DIR removed at teardown. Its pid.
 */
async function startSheepWithLogger(t: Test, dir: string, loggerScript: string, options: string[]): Promise<number> {
  const bin = path.join(dir, 'bin')
  fs.mkdirSync(bin)
  fs.writeFileSync(path.join(bin, 'logger'), `#!/bin/sh\n${loggerScript}\n`, { mode: 0o755 })
  const port = await freePort()
  const args = ['-p', String(port), '-n', '-c', `local:${path.join(dir, 'shm')}`, ...options]
  const started = startSheepWith(path.join(dir, 'store'), args, { PATH: `${bin}:${process.env.PATH}` })
  t.equal(started.status, 0, started.stderr)
  const pid = started.pid as number
  t.teardown(async () => {
    await stopSheep({ pid, port, dir, args })
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return pid
}

t.test('--log dst=syslog sends the log to the system log through logger(1)', async (t) => {
  const dir = tempDir()
  // a logger(1) that records how it was started and every line it was given
  const pid = await startSheepWithLogger(t, dir, `echo "$@" > "${dir}/logger-args"\nexec cat >> "${dir}/logger-input"`, [
    '--log',
    'dst=syslog,level=debug',
    '-D',
  ])
  const input = path.join(dir, 'logger-input')
  t.ok(await waitFor(() => fs.existsSync(input) && /started in/.test(fs.readFileSync(input, 'utf8'))), 'the start-up line reached logger')
  t.equal(fs.readFileSync(path.join(dir, 'logger-args'), 'utf8'), `--id=${pid} -t sheep --prio-prefix\n`, 'tagged sheep[pid]')
  const lines = fs.readFileSync(input, 'utf8').split('\n').filter(Boolean)
  t.ok(
    lines.every((line) => /^<(2[4-9]|3[01])>/.test(line)),
    'every line carries facility daemon and its severity',
  )
  t.ok(
    lines.some((line) => /^<28>.*direct I\/O \(-D\)/.test(line)),
    'a warning has severity warning (daemon.warning = 28)',
  )
  t.ok(
    lines.some((line) => /^<30>.*started in/.test(line)),
    'an info line has severity info (daemon.info = 30)',
  )
  t.notOk(fs.existsSync(path.join(dir, 'store', 'sheep.log')), 'no sheep.log')
})

const REAL_LOGGER = spawnSync('sh', ['-c', 'command -v logger'], { encoding: 'utf8' }).stdout.trim()
const HAVE_PYTHON = spawnSync('python3', ['-c', 'print(1)'], { encoding: 'utf8' }).status === 0

const syslogSkip = REAL_LOGGER && HAVE_PYTHON ? false : 'needs logger(1) and python3 (a Unix datagram receiver)'
t.test('the lines reach a syslog socket through the real logger(1)', { skip: syslogSkip }, async (t) => {
  const logger = REAL_LOGGER
  const dir = tempDir()
  const socket = path.join(dir, 'log')
  const received = path.join(dir, 'received')
  // /dev/log's stand-in: a Unix datagram socket that appends each message as a line
  const receiver = spawn(
    'python3',
    [
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'ab',0)\nwhile True:\n  f.write(s.recv(65536)+b'\\n')`,
      socket,
      received,
    ],
    { stdio: 'ignore' },
  )
  t.teardown(() => receiver.kill())
  t.ok(await waitFor(() => fs.existsSync(socket)), 'the receiver listens')
  const pid = await startSheepWithLogger(t, dir, `exec ${logger} -u "${socket}" "$@"`, ['-l', 'dst=syslog', '-u'])
  t.ok(await waitFor(() => fs.existsSync(received) && /started in/.test(fs.readFileSync(received, 'utf8'))), 'the start-up line arrived')
  const messages = fs.readFileSync(received, 'utf8')
  t.match(
    messages,
    new RegExp(`^<30>[A-Z][a-z]{2} [ \\d]\\d \\d{2}:\\d{2}:\\d{2} sheep\\[${pid}\\]: .*upgrade \\(-u\\)`, 'm'),
    'RFC 3164: <PRI>time sheep[pid]: message',
  )
})

/** True when nobody listens on `port`. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve(false))
    probe.listen(port, () => probe.close(() => resolve(true)))
  })
}

t.test('sheep -p 65535 serves on port 65535', async (t) => {
  if (!(await portIsFree(65535))) {
    t.pass('port 65535 is taken on this machine: nothing to try')
    return
  }
  let sheep: SheepProcess | undefined
  try {
    sheep = await startSheep({ port: 65535 })
  } catch (error) {
    t.fail(String(error))
    return
  }
  const started = sheep
  t.teardown(async () => {
    await stopSheep(started)
    fs.rmSync(started.dir, { recursive: true, force: true })
  })
  t.ok(isAlive(started.pid))
  const conn = new SheepConnection({ host: '127.0.0.1', port: 65535 })
  t.teardown(() => conn.close())
  const { nodes } = await getNodeList(conn)
  t.same(
    nodes.map((n) => nodeAddrText(n)),
    ['127.0.0.1:65535'],
    'the node announces port 65535',
  )
  const format = await dog(['cluster', 'format', '-c', '1'], { port: 65535 })
  t.equal(format.status, 0, format.stderr)
  const create = await dog(['vdi', 'create', 'top', '8M'], { port: 65535 })
  t.equal(create.status, 0, create.stderr)
  const list = await dog(['node', 'list'], { port: 65535 })
  t.match(list.stdout, /127\.0\.0\.1:65535/)
})
