// `dog vdi setattr` and `dog vdi getattr` (cli-and-formats §4.12): key/value attributes of a VDI,
// kept by the sheep in attribute objects found with GET_VDI_ATTR (wire-protocol.md §12.9).
import { asSdError, failureLabel, printTransportFailure, selectorOf } from './common.js'
import { EXIT_EXISTS, EXIT_FAILURE, EXIT_MISSING, EXIT_SUCCESS, EXIT_SYSFAIL, UsageError, type DogContext } from './cli.js'
import type { DogRuntime } from './runtime.js'
import { SD_MAX_VDI_ATTR_VALUE_LEN, SD_RES_NO_OBJ, SD_RES_NO_VDI, SD_RES_VDI_EXIST } from '../lib/proto.js'
import { getVdiAttr, readObj } from '../lib/sheep-api.js'
import { VDI_ATTR, VDI_ATTR_SIZE, VDI_ATTR_VALUE_AT } from '../lib/structs.js'
import { readFields } from '../lib/layout.js'

/** Lines and exit statuses for GET_VDI_ATTR results that both commands name (spec §4.12). */
const ATTR_FAILURES: ReadonlyMap<number, { line: (key: string) => string; status: number }> = new Map([
  [SD_RES_VDI_EXIST, { line: (key: string) => `The attribute '${key}' already exists`, status: EXIT_EXISTS }],
  [SD_RES_NO_OBJ, { line: (key: string) => `Attribute '${key}' not found`, status: EXIT_MISSING }],
  [SD_RES_NO_VDI, { line: () => 'VDI not found', status: EXIT_MISSING }],
])

/** Prints the line for a failed GET_VDI_ATTR and answers the exit status; `other` covers the rest. */
function reportAttrFailure(ctx: DogContext, error: unknown, key: string, other: { prefix: string; status: number }): number {
  const failure = asSdError(error)
  printTransportFailure(ctx, failure)
  const known = ATTR_FAILURES.get(failure.code)
  ctx.printStderrLine(known ? known.line(key) : `${other.prefix}: ${failureLabel(failure)}`)
  return known ? known.status : other.status
}

/** The value as C's strlen sees it: bytes up to the first NUL, at most 65 536. */
function cStringValue(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, Math.min(end < 0 ? bytes.length : end, SD_MAX_VDI_ATTR_VALUE_LEN))
}

async function readStdin(ctx: DogContext): Promise<Buffer> {
  const chunks: Buffer[] = []
  let length = 0
  if (ctx.io.stdin === undefined) return Buffer.alloc(0)
  for await (const chunk of ctx.io.stdin) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
    chunks.push(bytes)
    length += bytes.length
    if (length >= SD_MAX_VDI_ATTR_VALUE_LEN) break
  }
  return Buffer.concat(chunks).subarray(0, SD_MAX_VDI_ATTR_VALUE_LEN)
}

export async function setVdiAttr(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [name, key, valueText] = ctx.args as [string, string | undefined, string | undefined]
  if (key === undefined) throw new UsageError('Please specify the attribute key')
  const deleting = ctx.opts.delete === true
  let value: Buffer | undefined
  if (valueText !== undefined) value = cStringValue(Buffer.from(valueText))
  else if (!deleting) {
    try {
      value = cStringValue(await readStdin(ctx))
    } catch (error) {
      ctx.printStderrLine(`Failed to read attribute value from stdin: ${(error as Error).message}`)
      return EXIT_SYSFAIL
    }
  }
  const selector = selectorOf(ctx)
  try {
    await getVdiAttr(dog.daemon(ctx), {
      name,
      tag: selector.tag,
      snapId: selector.snapid,
      key,
      value,
      create: !deleting,
      excl: ctx.opts.exclusive === true,
      del: deleting,
    })
  } catch (error) {
    return reportAttrFailure(ctx, error, key, { prefix: 'Failed to set attribute', status: EXIT_FAILURE })
  }
  return EXIT_SUCCESS
}

export async function getVdiAttrValue(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [name, key] = ctx.args as [string, string | undefined]
  if (key === undefined) throw new UsageError('Please specify the attribute key')
  const selector = selectorOf(ctx)
  const conn = dog.daemon(ctx)
  let oid: bigint
  try {
    ;({ oid } = await getVdiAttr(conn, { name, tag: selector.tag, snapId: selector.snapid, key }))
  } catch (error) {
    return reportAttrFailure(ctx, error, key, { prefix: 'Failed to find attribute oid', status: EXIT_MISSING })
  }
  let attr: Buffer
  try {
    attr = await readObj(conn, oid, 0, VDI_ATTR_SIZE, { direct: true })
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to read attribute oid: ${failureLabel(failure)}`)
    return EXIT_SYSFAIL
  }
  const padded = attr.length >= VDI_ATTR_SIZE ? attr : Buffer.concat([attr, Buffer.alloc(VDI_ATTR_SIZE - attr.length)])
  const { valueLen } = readFields(padded, VDI_ATTR)
  ctx.printStdout(padded.subarray(VDI_ATTR_VALUE_AT, VDI_ATTR_VALUE_AT + Math.min(valueLen, SD_MAX_VDI_ATTR_VALUE_LEN)))
  return EXIT_SUCCESS
}
