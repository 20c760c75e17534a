// How sheepfs failures become the negative errno FUSE answers: a table from Sheepdog result codes
// (a missing VDI is ENOENT, a snapshot EROFS, anything about the connection EIO), and
// FsError for refusals sheepfs makes itself.
import os from 'node:os'
import { SdError } from '../lib/errors.js'
import { SD_RES_INVALID_PARMS, SD_RES_NO_SPACE, SD_RES_NO_SUPPORT, SD_RES_NO_TAG, SD_RES_NO_VDI, SD_RES_READONLY, SD_RES_VDI_LOCKED } from '../lib/proto.js'

export type ErrnoName = keyof typeof os.constants.errno

/** A refusal with an errno name (ENOENT, EINVAL …) and a message for the log. */
export class FsError extends Error {
  constructor(
    readonly errnoName: ErrnoName,
    message: string,
  ) {
    super(message)
    this.name = 'FsError'
  }
}

/** Result codes that mean something more precise than EIO. */
const ERRNO_OF_RESULT: ReadonlyMap<number, ErrnoName> = new Map<number, ErrnoName>([
  [SD_RES_NO_VDI, 'ENOENT'],
  [SD_RES_NO_TAG, 'ENOENT'],
  [SD_RES_READONLY, 'EROFS'],
  [SD_RES_INVALID_PARMS, 'EINVAL'],
  [SD_RES_NO_SPACE, 'ENOSPC'],
  [SD_RES_VDI_LOCKED, 'EBUSY'],
  [SD_RES_NO_SUPPORT, 'EOPNOTSUPP'],
])

/** The errno name of any failure: FsError's own, an SdError's by table, else EIO. */
export function errnoNameOf(error: unknown): ErrnoName {
  if (error instanceof FsError) return error.errnoName
  if (error instanceof SdError) return ERRNO_OF_RESULT.get(error.code) ?? 'EIO'
  return 'EIO'
}

/** The negative errno FUSE callbacks take. */
export function negativeErrno(name: ErrnoName): number {
  return -os.constants.errno[name]
}
