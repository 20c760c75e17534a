// Types shared by the op table and its handlers: what a handler receives and what it returns.
import type { SdRequest } from '../lib/codec.js'
import type { Layout } from '../lib/layout.js'

/** What every handler answers: a result code, optional payload and response-variant fields. */
export interface OpReply {
  result: number
  data?: Buffer
  variant?: Layout
  fields?: Record<string, unknown>
  /** A complete response header produced elsewhere (a cluster op's work phase): its variant bytes are sent as they are. */
  rawRsp?: Buffer
}

export interface OpRequest {
  req: SdRequest
  /** The request payload (only when CMD_WRITE and data_length > 0). */
  data?: Buffer
  /** True when the request came from another sheep rather than a client. */
  fromPeer?: boolean
}

export type OpKind = 'gateway' | 'peer' | 'local' | 'cluster'

export function reply(result: number, data?: Buffer, variant?: Layout, fields?: Record<string, unknown>): OpReply {
  return { result, data, variant, fields }
}
