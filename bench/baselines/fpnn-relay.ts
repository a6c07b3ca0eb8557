/**
 * The protocol's floor of bench/latency.ts (forked by the bench, IPC channel to the controlling
 * process): a bare relay that does for a P2P send what the FPNN protocol makes any server do, and
 * nothing else. FPNN over WebSocket at any path, as our client gate speaks it: `auth` is answered
 * `{ok: true}` whatever the token; `sendmsg` is answered `{mtime}` and pushed to the receiver's
 * connection as a twoway `pushmsg`, whose answer is read and dropped. Every other quest is
 * answered `{}`.
 *
 * So per message it reads two frames (the quest, the push's answer) and writes two (the push, the
 * answer), as our server does and the JSON relay (ws-server.ts: one read, one write) does not; it
 * checks nothing and stores nothing. Set beside ours, it splits our tail into what the protocol
 * costs on this machine (the load generators pay their half of it too) and what our server adds:
 * checks, the commit, bookkeeping.
 *
 * Frames are decoded and encoded with @rtm/fpnn and written as ours are (outbox.ts: one write per
 * connection per event-loop turn, the push before the answer); reads go through ws's receiver.
 */
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { decodePayload, encodeAnswerFrame, encodeQuestFrame, Flag, FrameDecoder, type Frame, type Payload } from '@rtm/fpnn';
import { WebSocketServer, type WebSocket } from 'ws';
import { binaryFrame, enqueue, type Member } from './outbox.js';

interface Client extends Member {
  uid: bigint | undefined;
  /** Seq of the last push to this connection. */
  pushSeq: number;
  readonly decoder: FrameDecoder;
}

const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
/** The newest logged-in connection of each uid. */
const users = new Map<bigint, Client>();

function handle(client: Client, frame: Frame): void {
  if (frame.kind !== 'quest') return; // the answer to a push
  const quest = decodePayload(frame.flag, frame.payload);
  let answer: Payload = {};
  if (frame.method === 'auth') {
    client.uid = BigInt(quest.uid as bigint | number);
    users.set(client.uid, client);
    answer = { ok: true };
  } else if (frame.method === 'sendmsg') {
    const mtime = BigInt(Date.now());
    const to = users.get(BigInt(quest.to as bigint | number));
    if (to) {
      const push = { from: client.uid, to: quest.to, mid: quest.mid, mtype: quest.mtype, msg: quest.msg, attrs: quest.attrs, mtime };
      enqueue(to, binaryFrame(encodeQuestFrame('pushmsg', push, Flag.MSGPACK, false, ++to.pushSeq)));
    }
    answer = { mtime };
  }
  if (!frame.oneway) enqueue(client, binaryFrame(encodeAnswerFrame(frame.seq, answer, frame.flag)));
}

wss.on('connection', (ws: WebSocket) => {
  const client: Client = {
    socket: (ws as unknown as { _socket: Socket })._socket,
    queue: [],
    uid: undefined,
    pushSeq: 0,
    decoder: new FrameDecoder(),
  };
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) return void ws.terminate();
    for (const frame of client.decoder.push(data)) handle(client, frame);
  });
  ws.on('close', () => {
    if (client.uid !== undefined && users.get(client.uid) === client) users.delete(client.uid);
  });
});

process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));

http.listen(0, '127.0.0.1', () => process.send!({ type: 'listening', port: (http.address() as AddressInfo).port }));
