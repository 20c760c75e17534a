// Types shared by the op table and its handlers: what a handler receives and what it returns.
import type { SdRequest } from '../lib/codec.js'
import type { Layout } from '../lib/layout.js'
import type { BufferPool } from '../lib/buffer-pool.js'

/** What every handler answers: a result code, optional payload and response-variant fields. */
export interface OpReply {
  result: number
  data?: Buffer
  variant?: Layout
  fields?: Record<string, unknown>
  /** A complete response header produced elsewhere (a cluster op's work phase): its variant bytes are sent as they are. */
  rawRsp?: Buffer
  /**
   * `data` is lent by a pool (lib/buffer-pool.ts): whoever sends it calls this once, when the
   * bytes are out (the server, after the socket took them). An in-process caller that keeps
   * or drops the reply leaves it: the buffer is then collected like any other.
   */
  release?: () => void
}

/** What the server tells a handler about the request's way back. */
export interface OpContext {
  /**
   * The reply goes out of a socket and is then released (OpReply.release): its data may be
   * lent by this pool.
   */
  replyPool?: BufferPool
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
