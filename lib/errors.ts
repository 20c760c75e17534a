// The one error type that crosses client boundaries: a failed Sheepdog request carries its
// result code and label; transport failures carry SD_RES_NETWORK_ERROR. Expected outcomes
// inside sheep are result codes, never exceptions; a broken invariant is `assert` and a crash.
import { SD_RES_NETWORK_ERROR, resultLabel, resultName } from './proto.js'

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
  constructor(message: string, readonly reason?: unknown) {
    super(SD_RES_NETWORK_ERROR)
    this.message = message
    this.name = 'SdTransportError'
  }
}

/** Crash on a broken invariant: these are bugs, not outcomes. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`)
}
