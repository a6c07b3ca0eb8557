/**
 * Baseline: a Socket.IO server (forked by the benches, IPC channel to the controlling process).
 * Clients connect with `?rooms=a,b` (websocket transport) and are joined to those rooms, then get
 * `joined`; a publisher emits `pub` {rid, from, mtype, mid, msg, attrs} and the server emits `m`
 * with the same fields plus `mtime` to the room (Socket.IO encodes a room broadcast once).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false, perMessageDeflate: false, httpCompression: false });

io.on('connection', (socket) => {
  const rooms = String(socket.handshake.query.rooms ?? '')
    .split(',')
    .filter(Boolean);
  if (rooms.length) void socket.join(rooms);
  socket.emit('joined');
  socket.on('pub', (m: { rid: string }) => {
    io.to(String(m.rid)).emit('m', { ...m, mtime: Date.now() });
  });
});

process.on('message', (m: { type: string; id: number; rids?: string[] }) => {
  if (m.type === 'rooms') {
    const sizes = Object.fromEntries((m.rids ?? []).map((rid) => [rid, io.sockets.adapter.rooms.get(rid)?.size ?? 0]));
    process.send!({ id: m.id, sizes, connections: io.engine.clientsCount });
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));

http.listen(0, '127.0.0.1', () => process.send!({ type: 'listening', port: (http.address() as AddressInfo).port }));
