// sheepfs's command line: the options of cli-and-formats.md §8 plus -w, defaults, the usage text
// (exit 0) and bad arguments (a message and exit 1).
import t from 'tap'
import { SD_DEFAULT_PORT } from '../../lib/proto.js'
import { SHEEPFS_DEFAULT_ADDRESS, parseSheepfsArgs } from '../../sheepfs/options.js'

t.test('defaults', async (t) => {
  const r = parseSheepfsArgs(['/mnt/sheep'])
  t.same(r, {
    kind: 'run',
    options: {
      mountpoint: '/mnt/sheep',
      host: SHEEPFS_DEFAULT_ADDRESS,
      port: SD_DEFAULT_PORT,
      debug: false,
      foreground: false,
      pageCache: false,
      objectCache: false,
      writeThrough: false,
    },
  })
})

t.test('every option, short and long', async (t) => {
  for (const argv of [
    ['-a', '10.0.0.2', '-p', '7001', '-d', '-k', '-o', '-w', '/m'],
    ['--address', '10.0.0.2', '--port', '7001', '--debug', '--pagecache', '--objectcache', '--writethrough', '/m'],
  ]) {
    const r = parseSheepfsArgs(argv)
    t.same(
      r,
      {
        kind: 'run',
        options: { mountpoint: '/m', host: '10.0.0.2', port: 7001, debug: true, foreground: true, pageCache: true, objectCache: true, writeThrough: true },
      },
      argv.join(' '),
    )
  }
})

t.test('help and bad arguments', async (t) => {
  const help = parseSheepfsArgs(['-h'])
  t.equal(help.kind === 'exit' && help.code, 0)
  t.match(help.kind === 'exit' ? help.stdout : '', /-w, --writethrough/)
  for (const [argv, message] of [
    [[], /no mount point/],
    [['/a', '/b'], /only one mount point/],
    [['-p', '70000', '/m'], /Invalid port number '70000'/],
    [['-a', 'bad host!', '/m'], /Invalid address/],
    [['-x', '/m'], /unknown option/],
  ] as const) {
    const r = parseSheepfsArgs([...argv])
    t.equal(r.kind === 'exit' && r.code, 1, argv.join(' '))
    t.match(r.kind === 'exit' ? r.stderr : '', message)
  }
})
