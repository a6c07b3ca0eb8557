/**
 * The write side of the bare baselines (ws-server.ts, fpnn-relay.ts), as our server writes: whole
 * unmasked WebSocket frames queued on a connection during an event-loop turn and written to its
 * socket in one write when the turn ends. A frame queued on many connections is the same buffer.
 */
import type { Socket } from 'node:net';

export interface Member {
  socket: Socket;
  queue: Buffer[];
}

/** An unmasked binary frame (server to client), FIN set. */
export function binaryFrame(payload: Uint8Array): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x82;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  out.set(payload, head);
  return out;
}

let dirty: Member[] = [];

function flush(): void {
  const members = dirty;
  dirty = [];
  for (const m of members) {
    const q = m.queue;
    m.queue = [];
    if (m.socket.destroyed) continue;
    m.socket.write(q.length === 1 ? q[0]! : Buffer.concat(q));
  }
}

/** Queues `frame` on `member` for the write at the end of this turn. */
export function enqueue(member: Member, frame: Buffer): void {
  if (member.queue.push(frame) !== 1) return;
  if (dirty.push(member) === 1) setImmediate(flush);
}
