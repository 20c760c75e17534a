// In-place reads for a socket a server accepted (issue #15). A client socket can be created with
// `onread` (lib/client.ts): the kernel then reads straight into buffers of its owner's choosing
// — a payload's own buffer — instead of into a fresh 64 KiB chunk per read that is then copied
// and left to the garbage collector. Node offers `onread` to client sockets only, so an accepted
// socket (from a server made with `pauseOnConnect`, not reading yet) has its handle moved to a
// new Socket created with it. The old Socket is destroyed without its handle, which counts it
// out of its server.
//
// This touches `socket._handle`, which Node does not document: where it is missing (another
// Node), undefined is returned and the caller reads through 'data' events as before.
import net from 'node:net'

export interface InPlaceReader {
  /** Where the next read lands (called after each read; the first time before any). */
  buffer(): Buffer
  /** `n` bytes were read into `target`, the buffer `buffer()` returned last. */
  received(target: Uint8Array, n: number): void
}

interface WithHandle {
  _handle: unknown
}

/**
 * A socket reading `accepted`'s connection in place into `reader`'s buffers, or undefined when
 * that cannot be done here (then `accepted` is untouched and still paused).
 */
export function readInPlace(accepted: net.Socket, reader: InPlaceReader): net.Socket | undefined {
  const old = accepted as unknown as WithHandle
  const handle = old._handle
  if (handle === null || typeof handle !== 'object' || accepted.readableFlowing === true) return undefined
  old._handle = null
  accepted.destroy()
  return new net.Socket({
    handle: handle as never,
    readable: true,
    writable: true,
    onread: {
      buffer: () => reader.buffer(),
      callback: (n: number, target: Uint8Array) => {
        reader.received(target, n)
        return true
      },
    },
  } as net.SocketConstructorOpts)
}
