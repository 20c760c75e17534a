// Tests for dog/runner.ts over a fake command table whose groups carry the real option tables:
// dispatch (prefixes, ambiguity, help and error texts, exit codes), options scanned getopt-style
// and applied by their table rows, usage texts, -a/-p/env handling, -T, the node-list hook and
// the argument log.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import t from 'tap'

import { DogExit, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE, UsageError, type DogCommand, type DogContext, type DogHandler } from '../../dog/cli.js'
import { CLUSTER_OPTIONS } from '../../dog/cluster.js'
import { NODE_OPTIONS } from '../../dog/node.js'
import { invalidRedundancyMessages } from '../../dog/parsers.js'
import { namedSubcommand, runDog, type RunDogOptions } from '../../dog/runner.js'
import { openDogSession } from '../../dog/runtime.js'
import { VDI_OPTIONS } from '../../dog/vdi.js'

/** Records every handler call of the fake table. */
const calls: Array<{ name: string; ctx: DogContext }> = []

function recordingHandler(name: string, status = EXIT_SUCCESS): DogHandler {
  return async (ctx) => {
    calls.push({ name, ctx })
    return status
  }
}

const fakeCommands: DogCommand[] = [
  {
    name: 'vdi',
    optionTable: VDI_OPTIONS,
    subcommands: [
      {
        name: 'create',
        args: '<vdiname> <size>',
        options: 'PycaphrvzT',
        description: 'create an image',
        needsNodeList: true,
        minArgs: 1,
        handler: recordingHandler('vdi create'),
      },
      { name: 'list', args: '[vdiname]', options: 'aprhoT', description: 'list images', handler: recordingHandler('vdi list') },
      {
        name: 'object',
        args: '<vdiname>',
        options: 'isaphT',
        description: 'show object information in the image',
        subcommands: [
          {
            name: 'location',
            args: '<vdiname>',
            description: 'show object locations',
            minArgs: 1,
            needsNodeList: true,
            handler: recordingHandler('vdi object location'),
          },
          { name: 'map', args: '<vdiname>', description: 'show object map information', minArgs: 1, handler: recordingHandler('vdi object map') },
          { name: 'dump-inode', args: '<inode file>', description: 'dump inode information', minArgs: 1, handler: recordingHandler('vdi object dump-inode') },
        ],
      },
      {
        name: 'delete',
        args: '<vdiname>',
        options: 'saphTBIm',
        description: 'delete an image',
        minArgs: 1,
        handler: async (ctx) => {
          calls.push({ name: 'vdi delete', ctx })
          if (ctx.args[0] === 'usage-by-throw') throw new UsageError('Please specify the VDI size')
          if (ctx.args[0] === 'usage-by-status') return EXIT_USAGE
          if (ctx.args[0] === 'exit-now') throw new DogExit(3)
          if (ctx.args[0] === 'minus-one') return -1
          return EXIT_SUCCESS
        },
      },
      { name: 'check', args: '<vdiname>', options: 'seaphT', description: 'check and repair image', handler: recordingHandler('vdi check') },
      { name: 'clone', args: '<src vdi> <dst vdi>', options: 'sPnaphrvT', description: 'clone an image', handler: recordingHandler('vdi clone') },
    ],
  },
  {
    name: 'node',
    optionTable: NODE_OPTIONS,
    subcommands: [
      { name: 'list', options: 'aprhT', description: 'list nodes', handler: recordingHandler('node list') },
      {
        name: 'recovery',
        args: '<max> <interval>',
        options: 'aphPrT',
        description: 'show recovery information or set/get recovery speed throttling of nodes',
        defaultSubcommand: 'info',
        subcommands: [
          { name: 'info', description: 'show recovery information of nodes (default)', handler: recordingHandler('node recovery info') },
          {
            name: 'set-throttle',
            args: '<max> <interval>',
            description: 'set new throttling',
            minArgs: 2,
            handler: recordingHandler('node recovery set-throttle'),
          },
          { name: 'get-throttle', description: 'get current throttling', handler: recordingHandler('node recovery get-throttle') },
        ],
      },
      {
        name: 'log',
        options: 'aphT',
        description: 'show or set log level of the node',
        subcommands: [
          {
            name: 'level',
            args: '<subcommand>',
            description: 'manipulate loglevel',
            subcommands: [
              { name: 'set', args: '<log level>', description: 'set new loglevel', minArgs: 1, handler: recordingHandler('node log level set') },
              { name: 'get', description: 'get current loglevel', handler: recordingHandler('node log level get') },
              { name: 'list', description: 'list available loglevels', handler: recordingHandler('node log level list') },
            ],
          },
        ],
      },
    ],
  },
  {
    name: 'nfs',
    subcommands: [{ name: 'create', args: '<name>', options: 'aph', description: 'create a NFS file system', handler: recordingHandler('nfs create') }],
  },
  {
    name: 'cluster',
    optionTable: CLUSTER_OPTIONS,
    subcommands: [
      { name: 'format', options: 'bcltaphzTVRfF', description: 'create a Sheepdog store', handler: recordingHandler('cluster format') },
      {
        name: 'snapshot',
        args: '<tag|idx> <path> [vdi1] [vdi2] ...',
        options: 'aphTm',
        description: 'snapshot/restore the cluster',
        subcommands: [{ name: 'save', description: 'save', minArgs: 2, handler: recordingHandler('cluster snapshot save') }],
      },
    ],
  },
]

interface RunResult {
  status: number
  stdout: string
  stderr: string
  lastCall: { name: string; ctx: DogContext } | undefined
}

const fakeHosts: Record<string, string> = { 'sheep-host': '10.0.0.5' }

async function run(argv: string[], env: Record<string, string | undefined> = {}, extra: RunDogOptions = {}): Promise<RunResult> {
  let stdout = ''
  let stderr = ''
  calls.length = 0
  const status = await runDog(
    argv,
    fakeCommands,
    {
      stdout: { write: (chunk) => (stdout += String(chunk)) },
      stderr: { write: (chunk) => (stderr += String(chunk)) },
      env,
    },
    { version: '1.0.1', resolveHost: async (host) => fakeHosts[host], ...extra },
  )
  return { status, stdout, stderr, lastCall: calls[calls.length - 1] }
}

const MAIN_USAGE =
  'Sheepdog administrator utility (version 1.0.1)\n' +
  'Usage: dog <command> <subcommand> [options]\n' +
  '\n' +
  'Available commands:\n' +
  '  vdi create              create an image\n' +
  '  vdi list                list images\n' +
  '  vdi object              show object information in the image\n' +
  '  vdi delete              delete an image\n' +
  '  vdi check               check and repair image\n' +
  '  vdi clone               clone an image\n' +
  '  node list               list nodes\n' +
  '  node recovery           show recovery information or set/get recovery speed throttling of nodes\n' +
  '  node log                show or set log level of the node\n' +
  '  nfs create              create a NFS file system\n' +
  '  cluster format          create a Sheepdog store\n' +
  '  cluster snapshot        snapshot/restore the cluster\n' +
  '\n' +
  "For more information, run 'dog <command> <subcommand> --help'.\n"

const VDI_CREATE_USAGE =
  'Usage: dog vdi create [-P] [-y] [-c copies] [-a address] [-p port] [-h] [-r] [-v] [-z block_size_shift] [-T] <vdiname> <size>\n' +
  'Options:\n' +
  '  -P, --prealloc          preallocate all the data objects\n' +
  '  -y, --hyper             create a hyper volume\n' +
  '  -c, --copies            specify the data redundancy level\n' +
  '  -a, --address           specify the daemon address (default: localhost)\n' +
  '  -p, --port              specify the daemon port\n' +
  '  -h, --help              display this help and exit\n' +
  '  -r, --raw               raw output mode: omit headers, separate fields with\n' +
  '                          single spaces and print all sizes in decimal bytes\n' +
  '  -v, --verbose           print more information than default\n' +
  '  -z, --block_size_shift  specify the bit shift num for data object size\n' +
  '  -T, --time              show elapsed time\n'

const VDI_OBJECT_OPTIONS =
  'Options:\n' +
  '  -i, --index             specify the index of data objects\n' +
  '  -s, --snapshot          specify a snapshot id or tag name\n' +
  '  -a, --address           specify the daemon address (default: localhost)\n' +
  '  -p, --port              specify the daemon port\n' +
  '  -h, --help              display this help and exit\n' +
  '  -T, --time              show elapsed time\n'

const AVAILABLE_VDI_COMMANDS =
  'Available vdi commands:\n' + '  vdi create\n' + '  vdi list\n' + '  vdi object\n' + '  vdi delete\n' + '  vdi check\n' + '  vdi clone\n'

t.test('main usage', async (t) => {
  for (const argv of [[], ['help'], ['-h'], ['--help']]) {
    const result = await run(argv)
    t.equal(result.status, 0, `dog ${argv.join(' ')}`)
    t.equal(result.stdout, MAIN_USAGE)
    t.equal(result.stderr, '')
  }
})

t.test('unknown or ambiguous command', async (t) => {
  for (const token of ['bogus', 'n', '', '-a']) {
    const result = await run([token, 'list'])
    t.equal(result.status, EXIT_USAGE)
    t.equal(result.stdout, '')
    t.equal(result.stderr, `Invalid command '${token}'\nTry 'dog --help' for more information.\n`)
  }
})

t.test('command and subcommand prefixes', async (t) => {
  let result = await run(['v', 'l'])
  t.equal(result.status, 0)
  t.equal(result.lastCall?.name, 'vdi list')
  result = await run(['no', 'li', '-r'])
  t.equal(result.lastCall?.name, 'node list')
  t.equal(result.lastCall?.ctx.opts.raw, true)
  result = await run(['vdi', 'list'])
  t.equal(result.lastCall?.name, 'vdi list', 'exact names work too')
  result = await run(['cl', 'f'])
  t.equal(result.lastCall?.name, 'cluster format')
})

t.test('unknown, ambiguous or missing subcommand', async (t) => {
  let result = await run(['vdi', 'bogus'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stdout, '')
  t.equal(result.stderr, `Invalid command 'vdi bogus'\n${AVAILABLE_VDI_COMMANDS}`)
  result = await run(['v', 'c'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stderr, `Invalid command 'v c'\n${AVAILABLE_VDI_COMMANDS}`, 'check/clone/create are ambiguous')
  for (const argv of [['vdi'], ['vdi', 'help'], ['vdi', '-h'], ['vdi', '--help']]) {
    result = await run(argv)
    t.equal(result.status, EXIT_USAGE)
    t.equal(result.stderr, AVAILABLE_VDI_COMMANDS, argv.join(' '))
  }
})

t.test('subcommand usage on -h / --help', async (t) => {
  let result = await run(['vdi', 'create', '-h'])
  t.equal(result.status, 0)
  t.equal(result.stdout, VDI_CREATE_USAGE)
  t.equal(result.stderr, '')
  t.equal(result.lastCall, undefined, 'handler not run')
  result = await run(['vdi', 'create', 'alpha', '--help'])
  t.equal(result.stdout, VDI_CREATE_USAGE)
  result = await run(['vdi', 'object', 'location', '-h'])
  t.equal(result.status, 0)
  t.equal(
    result.stdout,
    'Usage: dog vdi object {location|map|dump-inode} [-i index] [-s snapshot] [-a address] [-p port] [-h] [-T] <vdiname>\n' +
      'Available subcommands:\n' +
      '  location                show object locations\n' +
      '  map                     show object map information\n' +
      '  dump-inode              dump inode information\n' +
      VDI_OBJECT_OPTIONS,
  )
  result = await run(['node', 'log', '-h'])
  t.equal(
    result.stdout,
    'Usage: dog node log level [-a address] [-p port] [-h] [-T]\n' +
      'Available subcommands:\n' +
      '  level                   manipulate loglevel\n' +
      'Options:\n' +
      '  -a, --address           specify the daemon address (default: localhost)\n' +
      '  -p, --port              specify the daemon port\n' +
      '  -h, --help              display this help and exit\n' +
      '  -T, --time              show elapsed time\n',
  )
  result = await run(['vdi', 'create', '-p', 'x', '-h'])
  t.equal(result.status, EXIT_USAGE, 'options are handled in order: the bad port comes first')
})

t.test('usage on misuse goes to stdout with status 64', async (t) => {
  let result = await run(['vdi', 'create'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stdout, VDI_CREATE_USAGE)
  t.equal(result.stderr, '')

  result = await run(['vdi', 'object'])
  t.equal(result.status, EXIT_USAGE, 'a nested subcommand is required')
  t.match(result.stdout, /^Usage: dog vdi object \{location\|map\|dump-inode\} \[-i index\]/)

  result = await run(['vdi', 'object', 'location'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stdout, 'Usage: dog vdi object location [-i index] [-s snapshot] [-a address] [-p port] [-h] [-T] <vdiname>\n' + VDI_OBJECT_OPTIONS)

  result = await run(['node', 'log', 'level', 'bogus'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(
    result.stdout,
    'Usage: dog node log level {set|get|list} [-a address] [-p port] [-h] [-T]\n' +
      'Available subcommands:\n' +
      '  set                     set new loglevel\n' +
      '  get                     get current loglevel\n' +
      '  list                    list available loglevels\n' +
      'Options:\n' +
      '  -a, --address           specify the daemon address (default: localhost)\n' +
      '  -p, --port              specify the daemon port\n' +
      '  -h, --help              display this help and exit\n' +
      '  -T, --time              show elapsed time\n',
  )

  result = await run(['node', 'log', 'level', 'set'])
  t.equal(result.status, EXIT_USAGE)
  t.match(result.stdout, /^Usage: dog node log level set \[-a address\] \[-p port\] \[-h\] \[-T\]\nOptions:\n/)

  result = await run(['vdi', 'delete', 'usage-by-throw'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stderr, 'Please specify the VDI size\n')
  t.match(
    result.stdout,
    /^Usage: dog vdi delete \[-s snapshot\] \[-a address\] \[-p port\] \[-h\] \[-T\] \[-B nr-batched-reclamation\] \[-I reclamation-interval\] \[-m max-reclaim\] <vdiname>\n/,
  )

  result = await run(['vdi', 'delete', 'usage-by-status', '-T'])
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stderr, '')
  t.match(result.stdout, /^Usage: dog vdi delete /)
  t.notMatch(result.stdout, /Elapsed time/)
})

t.test('nested subcommands: prefixes, arguments, defaults', async (t) => {
  let result = await run(['vdi', 'obj', 'loc', 'alpha', '-i', '0x10', '-s', 'snap1'])
  t.equal(result.status, 0)
  t.equal(result.lastCall?.name, 'vdi object location')
  t.same(result.lastCall?.ctx.args, ['alpha'])
  t.same(
    result.lastCall?.ctx.path.map((level) => level.name),
    ['object', 'location'],
  )
  t.equal(result.lastCall?.ctx.opts.index, 16n)
  t.same(result.lastCall?.ctx.opts.snapshot, { tag: 'snap1' })

  result = await run(['node', 'recovery'])
  t.equal(result.lastCall?.name, 'node recovery info', 'default nested subcommand')
  result = await run(['node', 'recovery', 'set', '10', '1000'])
  t.equal(result.lastCall?.name, 'node recovery set-throttle')
  t.same(result.lastCall?.ctx.args, ['10', '1000'])
  result = await run(['node', 'recovery', 'set-throttle', '10'])
  t.equal(result.status, EXIT_USAGE)
  t.match(result.stdout, /^Usage: dog node recovery set-throttle \[-a address\] \[-p port\] \[-h\] \[-P\] \[-r\] \[-T\] <max> <interval>\n/)
  result = await run(['node', 'log', 'level', 'li'])
  t.equal(result.lastCall?.name, 'node log level list')
})

t.test('options anywhere after the subcommand, getopt style', async (t) => {
  let result = await run(['vdi', 'create', '-P', 'alpha', '--copies=4:2', '16M', '-vr', '-z22', '--', '-x'])
  t.equal(result.status, 0)
  const opts = result.lastCall?.ctx.opts
  t.same(result.lastCall?.ctx.args, ['alpha', '16M', '-x'])
  t.equal(opts?.prealloc, true)
  t.same(opts?.redundancy, { copies: 6, copyPolicy: 0x22, dataStrips: 4, parityStrips: 2 })
  t.equal(opts?.verbose, true)
  t.equal(opts?.raw, true)
  t.equal(opts?.blockSizeShift, 22)
  t.equal(opts?.address, '127.0.0.1')
  t.equal(opts?.port, 7000)
  t.equal(opts?.time, false)

  result = await run(['vdi', 'list', '--ra', '--port', '7001', '-o', '0x00ed202b00000001'])
  t.equal(result.lastCall?.ctx.opts.raw, true, 'unique long-option prefix')
  t.equal(result.lastCall?.ctx.opts.port, 7001)
  t.equal(result.lastCall?.ctx.opts.oid, 0xed202b00000001n)

  result = await run(['vdi', 'delete', 'alpha', '-s', '2', '-B', '64', '-I', '3', '-m', '5'])
  t.same(result.lastCall?.ctx.opts.snapshot, { snapid: 2 })
  t.equal(result.lastCall?.ctx.opts.nrBatchedReclamation, 64)
  t.equal(result.lastCall?.ctx.opts.reclamationInterval, 3)
  t.equal(result.lastCall?.ctx.opts.maxReclaim, 5)

  result = await run(['cluster', 'format', '-b', 'tree', '-c', '2', '-t', '-m', '-V', '-F', '-f'])
  t.equal(result.status, EXIT_USAGE, 'cluster format does not list -m')
  result = await run(['cluster', 'format', '-b', 'tree', '-c', '2', '-tVFfRl', '-z', '23'])
  const clusterOpts = result.lastCall?.ctx.opts
  t.equal(clusterOpts?.store, 'tree')
  t.same(clusterOpts?.redundancy, { copies: 2, copyPolicy: 0 })
  t.equal(clusterOpts?.strict, true)
  t.equal(clusterOpts?.fixedVnodes, true)
  t.equal(clusterOpts?.avoidDiskfull, true)
  t.equal(clusterOpts?.force, true)
  t.equal(clusterOpts?.recycleVid, true)
  t.equal(clusterOpts?.lock, true)
  t.equal(clusterOpts?.blockSizeShift, 23)
  t.equal(clusterOpts?.multithread, undefined)
})

t.test('getopt errors', async (t) => {
  const cases: Array<[string[], string]> = [
    [['vdi', 'list', '-k'], "dog: invalid option -- 'k'"],
    [['vdi', 'list', '-rk'], "dog: invalid option -- 'k'"],
    [['vdi', 'list', '-p'], "dog: option requires an argument -- 'p'"],
    [['vdi', 'list', '--bogus=1'], "dog: unrecognized option '--bogus=1'"],
    [['vdi', 'list', '--port'], "dog: option '--port' requires an argument"],
    [['vdi', 'list', '--raw=yes'], "dog: option '--raw' doesn't allow an argument"],
    [['vdi', 'create', 'x', '--p'], "dog: option '--p' is ambiguous; possibilities: '--prealloc' '--port'"],
    [['vdi', 'create', '-s', '1'], "dog: invalid option -- 's'"],
  ]
  for (const [argv, message] of cases) {
    const result = await run(argv)
    t.equal(result.status, EXIT_USAGE, argv.join(' '))
    t.equal(result.stdout, '')
    t.equal(result.stderr, `${message}\nTry 'dog --help' for more information.\n`, argv.join(' '))
  }
  const unique = await run(['vdi', 'list', '--p', '7002'])
  t.equal(unique.lastCall?.ctx.opts.port, 7002, '--p is unique for vdi list (only --port)')
  const interval = await run(['vdi', 'delete', 'x', '--re', '5'])
  t.equal(interval.lastCall?.ctx.opts.reclamationInterval, 5, '--re is unique for vdi delete')
})

t.test('-p and -a validation', async (t) => {
  for (const port of ['abc', '0', '65536', '70x', '-1', '']) {
    const result = await run(['vdi', 'list', '-p', port])
    t.equal(result.status, EXIT_USAGE, `port '${port}'`)
    t.equal(result.stderr, `Invalid port number '${port}'\n`)
    t.equal(result.stdout, '')
  }
  let result = await run(['vdi', 'list', '-p', '65535'])
  t.equal(result.lastCall?.ctx.opts.port, 65535)

  for (const address of ['no.such.host', '1.2.3', '0x7f000001', '300.1.1.1', '', 'a b']) {
    result = await run(['vdi', 'list', '-a', address])
    t.equal(result.status, EXIT_FAILURE, `address '${address}'`)
    t.equal(result.stderr, `Invalid ip address ${address}\n`)
  }
  result = await run(['vdi', 'list', '-a', '::1'])
  t.equal(result.lastCall?.ctx.opts.address, '::1')
  result = await run(['vdi', 'list', '--address=192.168.0.7'])
  t.equal(result.lastCall?.ctx.opts.address, '192.168.0.7')
  result = await run(['vdi', 'list', '-a', 'sheep-host'])
  t.equal(result.lastCall?.ctx.opts.address, '10.0.0.5', 'names are resolved')
})

t.test('SHEEPDOG_DOG_ADDR and SHEEPDOG_DOG_PORT', async (t) => {
  let result = await run(['vdi', 'list'], { SHEEPDOG_DOG_ADDR: '10.1.1.1', SHEEPDOG_DOG_PORT: '7005' })
  t.equal(result.lastCall?.ctx.opts.address, '10.1.1.1')
  t.equal(result.lastCall?.ctx.opts.port, 7005)
  result = await run(['vdi', 'list', '-p', '7006', '-a', '10.2.2.2'], { SHEEPDOG_DOG_ADDR: '10.1.1.1', SHEEPDOG_DOG_PORT: '7005' })
  t.equal(result.lastCall?.ctx.opts.address, '10.2.2.2', 'command line wins')
  t.equal(result.lastCall?.ctx.opts.port, 7006)
  result = await run(['vdi', 'list'], { SHEEPDOG_DOG_PORT: 'x' })
  t.equal(result.status, EXIT_USAGE)
  t.equal(result.stderr, "Invalid port number 'x'\n")
  result = await run(['vdi', 'list'], { SHEEPDOG_DOG_ADDR: 'nowhere' })
  t.equal(result.status, EXIT_FAILURE)
  t.equal(result.stderr, 'Invalid ip address nowhere\n')
})

t.test('group option values and their errors', async (t) => {
  const cases: Array<[string[], number, string]> = [
    [['vdi', 'create', 'a', '1G', '-c', '32'], EXIT_FAILURE, invalidRedundancyMessages('32').join('\n')],
    [['vdi', 'delete', 'a', '-s', '0'], EXIT_FAILURE, 'The snapshot id must be larger than zero'],
    [['vdi', 'create', 'a', '1G', '-z', '19'], EXIT_FAILURE, 'Object Size is larger than 2^20. Please set shift bit larger than 20'],
    [['vdi', 'create', 'a', '1G', '-z', '32'], EXIT_FAILURE, 'Object Size is limited to 2^31. Please set shift bit lower than 31'],
    [['vdi', 'create', 'a', '1G', '-z', '22', '-y'], EXIT_FAILURE, "Don't specify both -y and -z options, please"],
    [['vdi', 'create', 'a', '1G', '-y', '-z', '22'], EXIT_FAILURE, "Don't specify both -y and -z options, please"],
    [['vdi', 'object', 'map', 'a', '-i', 'zz'], EXIT_FAILURE, 'The index must be a decimal integer or a hexadecimal integer started with 0x'],
    [['vdi', 'list', '-o', 'xyz'], EXIT_FAILURE, 'object id must be a hex integer'],
    [['vdi', 'delete', 'a', '-B', 'x'], EXIT_FAILURE, 'The number of batched reclamation is invalid: x'],
    [['vdi', 'delete', 'a', '-I', '0'], EXIT_FAILURE, 'The interval of batched reclamation must bepositive integer'],
  ]
  for (const [argv, status, message] of cases) {
    const result = await run(argv)
    t.equal(result.status, status, argv.join(' '))
    t.equal(result.stderr, `${message}\n`, argv.join(' '))
    t.equal(result.lastCall, undefined)
  }
})

t.test('handler results: DogExit, -1, -T', async (t) => {
  let result = await run(['vdi', 'delete', 'exit-now', '-T'])
  t.equal(result.status, 3)
  t.equal(result.stdout, '', 'no elapsed time after DogExit')
  result = await run(['vdi', 'delete', 'minus-one'])
  t.equal(result.status, 255)
  result = await run(['vdi', 'delete', 'alpha', '-T'])
  t.equal(result.status, 0)
  t.match(result.stdout, /^\nElapsed time: \d+\.\d{3} seconds\n$/)
  result = await run(['vdi', 'delete', 'alpha', '--time'])
  t.match(result.stdout, /^\nElapsed time: \d+\.\d{3} seconds\n$/)
})

t.test('node list hook', async (t) => {
  const loaded: string[] = []
  const loadNodeList = async (ctx: DogContext): Promise<number | undefined> => {
    loaded.push(ctx.path.map((level) => level.name).join(' '))
    ctx.state.nodes = ['127.0.0.1:7000']
    return undefined
  }
  let result = await run(['vdi', 'object', 'location', 'alpha'], {}, { loadNodeList })
  t.same(loaded, ['object location'])
  t.same(result.lastCall?.ctx.state.nodes, ['127.0.0.1:7000'])
  result = await run(
    ['vdi', 'create'],
    {},
    {
      loadNodeList: async (ctx) => {
        ctx.printStderrLine('Failed to get node list')
        return 2
      },
    },
  )
  t.equal(result.status, 2, 'node list comes before the argument check, as in the original')
  t.equal(result.stderr, 'Failed to get node list\n')
  t.equal(result.stdout, '')
})

t.test('argument log (SHEEPDOG_DOG_LOG_PATH)', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'dog-log-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  const logPath = join(directory, 'dog.log')
  const previousTz = process.env.TZ
  process.env.TZ = 'UTC'
  t.teardown(() => {
    if (previousTz === undefined) delete process.env.TZ
    else process.env.TZ = previousTz
  })
  const env = { SHEEPDOG_DOG_LOG: '1', SHEEPDOG_DOG_LOG_PATH: logPath }
  await run(['vdi', 'list', '-r'], env, { nowSeconds: () => 1578304800 })
  await run(['bogus'], env, { nowSeconds: () => 1578304801 })
  t.equal(await readFile(logPath, 'utf8'), '2020 Jan 06 10:00:00 :  dog vdi list -r\n2020 Jan 06 10:00:01 :  dog bogus\n')
  const result = await run(['vdi', 'list'], { SHEEPDOG_DOG_LOG: '1', SHEEPDOG_DOG_LOG_PATH: join(directory, 'missing', 'x.log') })
  t.equal(result.stderr, `error at opening log file of dog(${join(directory, 'missing', 'x.log')}): No such file or directory\n`)
  t.equal(result.status, 0, 'a log failure does not stop dog')
})

t.test('a subcommand owns the abbreviation its table row names (dog v l = vdi list)', async (t) => {
  const table: DogCommand[] = [
    {
      name: 'vdi',
      optionTable: VDI_OPTIONS,
      subcommands: [
        { name: 'list', shortcut: 'l', options: 'aprhoT', description: 'list images', handler: recordingHandler('vdi list') },
        { name: 'lock', options: 'saphT', description: 'lock', handler: recordingHandler('vdi lock') },
        { name: 'check', options: 'aphT', description: 'check', handler: recordingHandler('vdi check') },
        { name: 'clone', options: 'aphT', description: 'clone', handler: recordingHandler('vdi clone') },
      ],
    },
  ]
  const io = { stdout: { write: () => true }, stderr: { write: () => true }, env: {} }
  calls.length = 0
  t.equal(await runDog(['v', 'l'], table, io, { resolveHost: async () => '127.0.0.1' }), EXIT_SUCCESS)
  t.equal(calls[calls.length - 1]?.name, 'vdi list', '`l` is list, not lock')
  t.equal(await runDog(['v', 'lo'], table, io, { resolveHost: async () => '127.0.0.1' }), EXIT_SUCCESS)
  t.equal(calls[calls.length - 1]?.name, 'vdi lock', 'a longer unique prefix still reaches lock')
  t.equal(await runDog(['v', 'c'], table, io, { resolveHost: async () => '127.0.0.1' }), EXIT_USAGE, 'prefixes nobody owns stay ambiguous')
})

t.test('namedSubcommand: the subcommand a command line names, and which move data', async (t) => {
  const commands = openDogSession().commands
  const movesData = (argv: string[]) => namedSubcommand(argv, commands)?.movesData === true
  for (const argv of [
    ['vdi', 'read', 'v'],
    ['vdi', 'wr', 'v'],
    ['v', 'backup', 'v'],
    ['vdi', 'restore', 'v'],
    ['vdi', 'clone', 'a', 'b'],
    ['cluster', 'snapshot', 'save', 't', '/p'],
  ])
    t.ok(movesData(argv), `${argv.join(' ')} moves a VDI's bytes (malloc kept in the heap)`)
  for (const argv of [['vdi', 'list'], ['node', 'info'], ['cluster', 'info'], ['vdi'], [], ['nosuch', 'read']])
    t.notOk(movesData(argv), `${argv.join(' ') || '(nothing)'}: no`)
  t.equal(namedSubcommand(['vdi', 'c'], commands), undefined, 'an ambiguous prefix names none')
})
