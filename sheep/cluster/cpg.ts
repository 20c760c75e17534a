// Loads the libcpg binding (native/corosync, built at npm install when corosync's headers are
// present) and names corosync's result codes. The addon is optional: only the corosync driver
// loads it, and says what is missing when it cannot.
import { addonFile, loadAddon } from '../../lib/native-addon.js'

/** A CPG member as a configuration change lists it. */
export interface CpgAddress {
  nodeid: number
  pid: number
  reason: number
}

export interface CpgHandle {
  initialize(): number
  join(group: string): number
  /** One message of the concatenated buffers, in agreed (total) order. */
  mcast(parts: Buffer[]): number
  localNodeId(): number | null
  finalize(): void
}

interface CpgAddon {
  Cpg: new (
    onDeliver: (nodeid: number, pid: number, message: Buffer) => void,
    onConfchg: (members: CpgAddress[], left: CpgAddress[], joined: CpgAddress[]) => void,
    onError: (code: number) => void,
  ) => CpgHandle
}

/** cs_error_t values the driver tells apart (corosync/corotypes.h). */
export const CS_OK = 1
export const CS_ERR_LIBRARY = 2
export const CS_ERR_TRY_AGAIN = 6
export const CS_ERR_EXIST = 14
export const CS_ERR_SECURITY = 100

const CS_ERROR_NAMES: Readonly<Record<number, string>> = {
  1: 'CS_OK',
  2: 'CS_ERR_LIBRARY',
  3: 'CS_ERR_VERSION',
  4: 'CS_ERR_INIT',
  5: 'CS_ERR_TIMEOUT',
  6: 'CS_ERR_TRY_AGAIN',
  7: 'CS_ERR_INVALID_PARAM',
  8: 'CS_ERR_NO_MEMORY',
  9: 'CS_ERR_BAD_HANDLE',
  10: 'CS_ERR_BUSY',
  11: 'CS_ERR_ACCESS',
  12: 'CS_ERR_NOT_EXIST',
  13: 'CS_ERR_NAME_TOO_LONG',
  14: 'CS_ERR_EXIST',
  15: 'CS_ERR_NO_SPACE',
  16: 'CS_ERR_INTERRUPT',
  17: 'CS_ERR_NAME_NOT_FOUND',
  18: 'CS_ERR_NO_RESOURCES',
  19: 'CS_ERR_NOT_SUPPORTED',
  20: 'CS_ERR_BAD_OPERATION',
  21: 'CS_ERR_FAILED_OPERATION',
  22: 'CS_ERR_MESSAGE_ERROR',
  23: 'CS_ERR_QUEUE_FULL',
  24: 'CS_ERR_QUEUE_NOT_AVAILABLE',
  25: 'CS_ERR_BAD_FLAGS',
  26: 'CS_ERR_TOO_BIG',
  27: 'CS_ERR_NO_SECTIONS',
  100: 'CS_ERR_SECURITY',
}

export function csErrorName(code: number): string {
  return CS_ERROR_NAMES[code] ?? `cs_error ${code}`
}

let addon: CpgAddon | undefined

/** The binding's constructor, or an Error saying what is missing. */
export function loadCpgAddon(): CpgAddon | Error {
  if (addon) return addon
  const loaded = loadAddon<CpgAddon>('corosync', 'sheepdog_cpg')
  if (!(loaded instanceof Error)) {
    addon = loaded
    return addon
  }
  if (!loaded.message.endsWith('was not built')) return new Error(`the corosync driver is not available: ${loaded.message}`)
  return new Error(
    `the corosync driver is not available: ${addonFile('corosync', 'sheepdog_cpg')} was not built (install corosync, libcpg-dev and libcorosync-common-dev, then run npm install, or scripts/install-deps.sh)`,
  )
}
