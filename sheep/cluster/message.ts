// Encoding of cluster-driver messages and other internal state with msgpackr (never used on the
// Sheepdog wire). Buffers and bigints round-trip as themselves.
import { Packr } from 'msgpackr'

const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'bigint' })

export function packMessage(value: unknown): Buffer {
  return packr.pack(value)
}

export function unpackMessage<T>(buf: Buffer): T {
  return packr.unpack(buf) as T
}
