// Installing the package as an admin does (issue 17): `npm pack` (whose prepack builds dist/)
// makes a tarball that `npm install -g --prefix` installs; sheep, dog and sheepfs run from the
// prefix's bin/ (symlinks into the installed package, which finds its dist/), the man pages land
// where man(1) looks, and the installed sheep and dog format a one-node cluster. Dependencies
// come from npm's cache when it has them (--prefer-offline), else from the registry.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { REPO, freePort, programEnv, runProgram, tempDir, trackPid, untrackPid, waitFor, isAlive } from '../../harness/sheep.js'

const PACK_TIMEOUT_MS = 90_000
const INSTALL_TIMEOUT_MS = 120_000
/** What prepack needs to build dist/ and what the package ships (tests, bench and harness are not built). */
const PACKAGE_SOURCES = ['package.json', 'tsconfig.json', 'README.md', 'bin', 'lib', 'sheep', 'dog', 'sheepfs', 'man', 'contrib', 'native', 'scripts']

t.test('npm pack, npm install -g --prefix, then run from there', async (t) => {
  const root = tempDir('sheep-install-')
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const env = programEnv({ npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' })

  // packed from a copy of the sources, so that prepack's build does not rewrite the dist/ that
  // other test files run from at the same time
  const source = path.join(root, 'source')
  for (const entry of PACKAGE_SOURCES) fs.cpSync(path.join(REPO, entry), path.join(source, entry), { recursive: true })
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(source, 'node_modules'))
  const pack = await runProgram('npm', ['pack', '--pack-destination', root], { timeoutMs: PACK_TIMEOUT_MS, env, cwd: source })
  t.equal(pack.status, 0, `npm pack: ${pack.stderr.split('\n').slice(-3).join(' ')}`)
  const tarball = fs.readdirSync(root).find((name) => /^sheepdog-node-.*\.tgz$/.test(name))
  if (!t.ok(tarball, 'a tarball')) return

  const prefix = path.join(root, 'prefix')
  const install = await runProgram('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', path.join(root, tarball as string)], {
    timeoutMs: INSTALL_TIMEOUT_MS,
    env,
  })
  if (!t.equal(install.status, 0, `npm install -g: ${install.stderr.split('\n').slice(-3).join(' ')}`)) return

  const bin = (name: string) => path.join(prefix, 'bin', name)
  for (const name of ['sheep', 'dog', 'sheepfs']) t.ok(fs.existsSync(bin(name)), `${name} is on the prefix's PATH`)
  for (const page of ['sheep.8', 'dog.8', 'sheepfs.8']) t.ok(fs.existsSync(path.join(prefix, 'share', 'man', 'man8', page)), `man page ${page} installed`)
  const installed = path.join(prefix, 'lib', 'node_modules', 'sheepdog-node')
  t.ok(fs.existsSync(path.join(installed, 'contrib', 'systemd', 'sheep@.service')), 'the systemd units come with it')
  t.notOk(fs.existsSync(path.join(installed, 'dist', 'test')), 'the tests do not')
  // the install script builds the corosync driver's binding where corosync's headers are
  if (fs.existsSync('/usr/include/corosync/cpg.h')) {
    t.ok(fs.existsSync(path.join(installed, 'native', 'corosync', 'build', 'Release', 'sheepdog_cpg.node')), 'the libcpg binding is built at install')
  }

  // run with a PATH that has the prefix first, from a directory outside the repository
  const runEnv = programEnv({ PATH: `${path.join(prefix, 'bin')}:${process.env.PATH ?? ''}` })
  const help = await runProgram(bin('dog'), ['--help'], { env: runEnv, timeoutMs: 30_000 })
  t.equal(help.status, 0, 'dog --help')
  t.match(help.stdout, /Usage: dog <command>/)
  const version = await runProgram(bin('sheep'), ['-v'], { env: runEnv, timeoutMs: 30_000 })
  t.equal(version.status, 0, 'sheep -v')
  t.match(version.stdout, /Sheepdog daemon version/)

  const port = await freePort()
  const store = path.join(root, 'store')
  const started = await runProgram(bin('sheep'), ['-n', '-p', String(port), '-c', `local:${path.join(root, 'shm')}`, store], { env: runEnv, timeoutMs: 60_000 })
  if (!t.equal(started.status, 0, `the installed sheep starts: ${started.stderr}`)) return
  const pid = Number(fs.readFileSync(path.join(store, 'lock'), 'utf8').trim())
  trackPid(pid)
  t.teardown(async () => {
    untrackPid(pid)
    if (!isAlive(pid)) return
    process.kill(pid, 'SIGTERM')
    if (!(await waitFor(() => !isAlive(pid), 10_000))) process.kill(pid, 'SIGKILL')
  })
  const format = await runProgram(bin('dog'), ['cluster', 'format', '-c', '1', '-p', String(port)], { env: runEnv, timeoutMs: 30_000 })
  t.equal(format.status, 0, `the installed dog formats it: ${format.stderr}`)
  const info = await runProgram(bin('dog'), ['cluster', 'info', '-p', String(port)], { env: runEnv, timeoutMs: 30_000 })
  t.match(info.stdout, /Cluster status: running/, 'and the cluster runs')
})
