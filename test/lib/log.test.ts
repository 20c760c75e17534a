// lib/log.ts: reopening a logger's file (sheep's SIGHUP after logrotate renamed sheep.log) sends
// later lines to a new file at the same path; loggers without a file have nothing to reopen.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { createLogger, reopenLogFile } from '../../lib/log.js'

t.test('reopenLogFile: later lines land in a new file at the same path', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'log-reopen-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'sheep.log')
  const log = createLogger({ file, format: 'default' })
  log.info('before')
  fs.renameSync(file, `${file}.1`)
  log.info('still to the renamed file')
  t.equal(reopenLogFile(log), true, 'a file logger reopens')
  log.info('after')
  t.equal(fs.readFileSync(`${file}.1`, 'utf8'), 'before\nstill to the renamed file\n', 'the renamed file has the lines before the reopen')
  t.equal(fs.readFileSync(file, 'utf8'), 'after\n', 'the new file has the lines after it')
})

t.test('reopenLogFile: a logger to stdout has no file to reopen', async (t) => {
  t.equal(reopenLogFile(createLogger({ level: 0 })), false)
})

t.test('reopenLogFile: when the path cannot be opened, the old file stays in use', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'log-reopen-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const logDir = path.join(dir, 'logs')
  fs.mkdirSync(logDir)
  const file = path.join(logDir, 'sheep.log')
  const log = createLogger({ file, format: 'default' })
  fs.renameSync(logDir, path.join(dir, 'moved'))
  t.throws(() => reopenLogFile(log), { code: 'ENOENT' })
  log.info('kept')
  t.equal(fs.readFileSync(path.join(dir, 'moved', 'sheep.log'), 'utf8'), 'kept\n')
})
