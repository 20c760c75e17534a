// `dog vdi alter-copy <name> -c N [-f]` (cli-and-formats §4.16): changes the number of copies of
// a standalone replicated VDI (no parent, no children): the inode header is rewritten with the
// new count, then ALTER_VDI_COPY makes every node adopt it and recover the missing replicas.
import { forEachVdi, writeObject, lightRequest } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, UsageError, type DogContext } from './cli.js'
import { confirm } from './prompt.js'
import type { DogRuntime } from './runtime.js'
import { openVdiInode } from './vdi-inode.js'
import { SD_INODE_HEADER_SIZE, updateInodeHeader } from '../lib/inode.js'
import { vidToVdiOid } from '../lib/oid.js'
import { SD_DEFAULT_COPIES } from '../lib/proto.js'
import { alterVdiCopy } from '../lib/sheep-api.js'

const ALTER_VDI_COPY_PROMPT =
  '    __\n' +
  "   ()'`;\n" +
  "   /\\|`  Caution! Changing VDI's redundancy level will affect\n" +
  '  /  |   the VDI itself only and trigger recovery.\n' +
  '(/_)_|_  Are you sure you want to continue? [yes/no]: '

/** No other VDI descends from `vid` (snapshots and clones name their parent). */
async function hasNoChildren(ctx: DogContext, dog: DogRuntime, vid: number): Promise<boolean | undefined> {
  let children = 0
  const walked = await forEachVdi(ctx, dog.daemon(ctx), (vdi) => {
    if (vdi.header.parentVdiId === vid) children++
  })
  return walked ? children === 0 : undefined
}

/**
 * The copy count `alter-copy -c N` asks for (shared by `vdi alter-copy` and `cluster
 * alter-copy`): replication only, 3 when not given, and a confirmation when it exceeds the
 * nodes. Undefined when the user declined.
 */
export async function requestedCopies(ctx: DogContext, dog: DogRuntime, subject: 'vdi' | 'cluster'): Promise<number | undefined> {
  if ((ctx.opts.redundancy?.copyPolicy ?? 0) !== 0) {
    throw new UsageError('Changing redundancy level of erasure coded vdi is not supported yet.')
  }
  let copies = ctx.opts.redundancy?.copies ?? 0
  if (copies === 0) {
    copies = SD_DEFAULT_COPIES
    ctx.printStdout(`The ${subject}'s redundancy level is not specified, use ${SD_DEFAULT_COPIES} as default.\n`)
  }
  const nodeCount = dog.nodeList(ctx).nodes.length
  if (!ctx.opts.force && copies > nodeCount) {
    const prompt = `Number of copies (${copies}) is larger than number of nodes (${nodeCount}).\n` + 'Are you sure you want to continue? [yes/no]: '
    if (!(await confirm(prompt, ctx.io))) return undefined
  }
  return copies
}

export async function alterVdiCopies(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  const copies = await requestedCopies(ctx, dog, 'vdi')
  if (copies === undefined) return EXIT_SUCCESS

  const conn = dog.daemon(ctx)
  const vdi = await openVdiInode(ctx, conn, name, { snapid: 0, tag: '' })
  if (vdi === undefined) {
    ctx.printStderrLine(`Reading ${name}'s vdi object failure.`)
    return EXIT_FAILURE
  }
  const { header } = vdi
  if (header.copyPolicy !== 0) {
    ctx.printStderrLine(`${name}'s copy policy is erasure code, changing it is not supported yet.`)
    return EXIT_FAILURE
  }
  const oldCopies = header.nrCopies
  if (oldCopies === copies) {
    ctx.printStderrLine(`${name}'s redundancy level is already set to ${oldCopies}, nothing changed.`)
    return EXIT_FAILURE
  }
  const childless = header.parentVdiId === 0 ? await hasNoChildren(ctx, dog, vdi.vid) : false
  if (childless === undefined) return EXIT_FAILURE
  if (!childless) {
    ctx.printStderrLine('Only standalone vdi supports changing redundancy level.')
    ctx.printStderrLine(`Please clone ${name} with -n (--no-share) option first.`)
    return EXIT_FAILURE
  }
  if (!ctx.opts.force && !(await confirm(ALTER_VDI_COPY_PROMPT, ctx.io))) return EXIT_SUCCESS

  const newHeader = updateInodeHeader(Buffer.from(vdi.headerBytes.subarray(0, SD_INODE_HEADER_SIZE)), { nrCopies: copies })
  const written = await writeObject(ctx, conn, vidToVdiOid(vdi.vid), 0, newHeader, {
    copies: oldCopies,
    copyPolicy: header.copyPolicy,
    direct: true,
  })
  if (!written) {
    ctx.printStderrLine(`Overwrite the vdi object's header of ${name} failure while setting its redundancy level.`)
    return EXIT_FAILURE
  }
  const altered = await lightRequest(ctx, () =>
    alterVdiCopy(conn, vdi.vid, {
      copies,
      copyPolicy: 0,
      blockSizeShift: header.blockSizeShift,
    }),
  )
  if (!altered) {
    ctx.printStderrLine(`Changing ${name}'s redundancy level failure.`)
    return EXIT_FAILURE
  }
  ctx.printStderrLine(`${name}'s redundancy level is set to ${copies}, the old one was ${oldCopies}.`)
  return EXIT_SUCCESS
}
