// The one error type that crosses client boundaries: a failed Sheepdog request carries its
// result code and label; transport failures carry SD_RES_NETWORK_ERROR. Expected outcomes
// inside sheep are result codes, never exceptions; a broken invariant is `assert` and a crash.
import { SD_RES_EIO, SD_RES_NETWORK_ERROR, SD_RES_NO_SPACE, SD_RES_SYSTEM_ERROR, resultLabel, resultName } from './proto.js'

export class SdError extends Error {
  readonly code: number
  readonly label: string

  constructor(code: number, detail?: string) {
    const label = resultLabel(code)
    super(detail ? `${detail}: ${label}` : label)
    this.name = 'SdError'
    this.code = code
    this.label = label
  }

  get codeName(): string {
    return resultName(this.code)
  }

  /** True for failures of the connection itself rather than an answer from a sheep. */
  get isTransport(): boolean {
    return this.code === SD_RES_NETWORK_ERROR
  }
}

/** A transport-level failure (connect refused, reset, timeout) as an SdError. */
export class SdTransportError extends SdError {
  constructor(
    message: string,
    readonly reason?: unknown,
  ) {
    super(SD_RES_NETWORK_ERROR)
    this.message = message
    this.name = 'SdTransportError'
  }
}

/**
 * A connection that could not be made (refused, unreachable, connect timeout): the request was
 * never sent, so sending it elsewhere cannot apply it twice (sheep falls back from a peer's I/O
 * address to its main address on this).
 */
export class SdConnectError extends SdTransportError {
  constructor(message: string, reason?: unknown) {
    super(message, reason)
    this.name = 'SdConnectError'
  }
}

/** Crash on a broken invariant: these are bugs, not outcomes. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`)
}

/**
 * The result code an exception stands for — the one place where exceptions become results: an
 * SdError carries its own; a system error (a Node error with a string errno code) is a disk or
 * system failure: ENOSPC/EDQUOT → SD_RES_NO_SPACE, anything else → SD_RES_EIO; any other
 * exception is a bug → SD_RES_SYSTEM_ERROR. Never SD_RES_SUCCESS.
 */
export function resultOfError(e: unknown): number {
  if (e instanceof SdError) return e.code
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code === 'ENOSPC' || code === 'EDQUOT' ? SD_RES_NO_SPACE : SD_RES_EIO
  return SD_RES_SYSTEM_ERROR
}
