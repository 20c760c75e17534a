// Frames written to one socket in one event-loop turn leave in one writev (issue #15): the first
// write of a turn corks the socket and a setImmediate uncorks it once the turn's I/O callbacks
// have run, so replies finishing together (and requests sent together) cost one system call and
// one wake-up of the receiver, not one each. A lone frame waits only for the end of its turn;
// one known to have nothing to wait for (the sheep serves no other request) leaves at once.
import type { Writable } from 'node:stream'

const corked = new WeakSet<Writable>()

/**
 * Writes a header and its payload (if any) to `socket`, together with the turn's other frames.
 * `sent` is called once the socket is done with the payload: written, or failed.
 */
export function writeFrame(socket: Writable, header: Buffer, data?: Buffer, sent?: () => void): void {
  corkForTurn(socket)
  writeParts(socket, header, data, sent)
}

/** Writes one message's buffers to `socket`, together with the turn's other writes (NBD replies). */
export function writeBuffers(socket: Writable, parts: readonly Buffer[]): void {
  corkForTurn(socket)
  for (const part of parts) socket.write(part)
}

/** Corks `socket` until the end of this event-loop turn, unless it already is. */
function corkForTurn(socket: Writable): void {
  if (corked.has(socket)) return
  corked.add(socket)
  socket.cork()
  setImmediate(() => {
    corked.delete(socket)
    socket.uncork()
  })
}

/**
 * Writes a header and its payload (if any) to `socket` at once, in one writev, for a frame known
 * to be alone: nothing of its turn to wait for. Frames already waiting on the socket leave first.
 */
export function writeFrameNow(socket: Writable, header: Buffer, data?: Buffer, sent?: () => void): void {
  socket.cork()
  writeParts(socket, header, data, sent)
  socket.uncork()
}

function writeParts(socket: Writable, header: Buffer, data: Buffer | undefined, sent: (() => void) | undefined): void {
  socket.write(header)
  if (data && data.length > 0) socket.write(data, sent && (() => sent()))
  else sent?.()
}
