/**
 * Load-generator side (runs only in worker processes): a lean FPNN-over-WebSocket client for our
 * server, Socket.IO and bare-ws clients for the baselines, token fetching, and the IPC loop.
 *
 * The FPNN client answers every push with an empty map, as every RTM SDK does, from a pre-encoded
 * answer whose seq is patched; it decodes a push payload only when asked (the latency bench), so
 * that client CPU goes to what the protocol requires rather than to decoding. By default the
 * answers written in one event-loop turn leave in one write (`batchAnswers`): pushes that arrive
 * together are answered together, as a client that batches its writes does; with
 * `batchAnswers: false` every answer is its own write, as the official SDKs do.
 */
import { decodePayload, encodeAnswer, encodePayload, encodeQuest, Flag, FrameDecoder, type Frame, type Payload } from '@rtm/fpnn';
import { RawClient, TEST_PID, TEST_SECRET } from '@rtm/testkit';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';

/** Zero masks: `ws` then skips masking client frames (less client CPU; servers unmask regardless). */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

const ANSWER_TEMPLATE = encodeAnswer(0, encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK);
/**
 * The answer as a whole client WebSocket frame (RFC 6455 §5.2): FIN + binary, masked with a zero
 * key so the payload goes as is. Batched answers are written to the socket with these, as our
 * server writes its frames: ws's sender would cost a call, a header and a copy per answer.
 */
const ANSWER_FRAME = Buffer.concat([Buffer.from([0x82, 0x80 | ANSWER_TEMPLATE.length, 0, 0, 0, 0]), ANSWER_TEMPLATE]);
const ANSWER_FRAME_SEQ_AT = 6 + 12;
if (ANSWER_TEMPLATE.length >= 126) throw new Error('the answer template needs a longer WebSocket header');

export class FpnnWsClient {
  private readonly decoder = new FrameDecoder();
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (p: Payload) => void; reject: (e: Error) => void }>();
  /** Pushes received (twoway or oneway quests from the server). */
  pushes = 0;
  onPush: ((frame: Frame & { kind: 'quest' }) => void) | undefined;

  /** Seqs of this turn's answers (batched answers), written when the turn ends. */
  private answerSeqs: number[] | undefined;
  private readonly socket: import('node:net').Socket | undefined;

  private constructor(
    readonly ws: WebSocket,
    private readonly batchAnswers: boolean,
  ) {
    this.socket = (ws as unknown as { _socket?: import('node:net').Socket })._socket;
    ws.on('message', (data: Buffer) => this.onBytes(data));
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  /** With `ca` (PEM), over wss:// to the client gate's TLS port, trusting that certificate. */
  static connect(endpoint: string, batchAnswers = true, ca?: string): Promise<FpnnWsClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${ca ? 'wss' : 'ws'}://${endpoint}/service/websocket`, {
        perMessageDeflate: false,
        generateMask: zeroMask,
        ...(ca ? { ca } : {}),
      });
      ws.binaryType = 'nodebuffer';
      ws.once('open', () => resolve(new FpnnWsClient(ws, batchAnswers)));
      ws.once('error', reject);
    });
  }

  private onBytes(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      if (frame.kind === 'quest') {
        this.pushes++;
        if (!frame.oneway) {
          if (this.batchAnswers && this.socket) this.answerInTurn(frame.seq);
          else {
            const answer = Buffer.from(ANSWER_TEMPLATE);
            answer.writeUInt32LE(frame.seq, 12);
            this.ws.send(answer);
          }
        }
        this.onPush?.(frame);
      } else {
        const p = this.pending.get(frame.seq);
        if (!p) continue;
        this.pending.delete(frame.seq);
        const payload = decodePayload(frame.flag, frame.payload);
        if (frame.ok) p.resolve(payload);
        else p.reject(new Error(`${String(payload.code)}: ${String(payload.ex)}`));
      }
    }
  }

  /** Queues an answer; this turn's answers leave in one write when it ends. */
  private answerInTurn(seq: number): void {
    if (!this.answerSeqs) {
      this.answerSeqs = [];
      process.nextTick(() => this.writeAnswers());
    }
    this.answerSeqs.push(seq);
  }

  private writeAnswers(): void {
    const seqs = this.answerSeqs!;
    this.answerSeqs = undefined;
    const out = Buffer.allocUnsafe(seqs.length * ANSWER_FRAME.length);
    for (let i = 0, at = 0; i < seqs.length; i++, at += ANSWER_FRAME.length) {
      ANSWER_FRAME.copy(out, at);
      out.writeUInt32LE(seqs[i]!, at + ANSWER_FRAME_SEQ_AT);
    }
    if (this.socket!.writable) this.socket!.write(out);
  }
  quest(method: string, payload: Payload = {}): Promise<Payload> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.ws.send(encodeQuest(method, encodePayload(Flag.MSGPACK, payload), Flag.MSGPACK, false, seq));
    });
  }

  /** Sends a quest without tracking its answer (answers to unknown seqs are dropped). */
  fire(method: string, payload: Payload): void {
    this.ws.send(encodeQuest(method, encodePayload(Flag.MSGPACK, payload), Flag.MSGPACK, false, ++this.seq));
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

let saltCounter = 0n;
/** Tokens for `uids` from the server gate (signed `gettoken`), over one pipelined TCP connection. */
export async function fetchTokens(serverEndpoint: string, uids: readonly bigint[]): Promise<string[]> {
  const gate = await RawClient.tcp(serverEndpoint);
  try {
    return await pool(uids, 64, async (uid) => {
      const salt = BigInt(Date.now()) * 1_000_000n + BigInt(process.pid % 1000) * 1000n + (saltCounter++ % 1000n);
      const { token } = await gate.signed('gettoken', { uid }, TEST_PID, TEST_SECRET, salt);
      return token as string;
    });
  } finally {
    gate.close();
  }
}

/** A logged-in FPNN client: connect, `auth`. */
export async function rtmLogin(
  clientEndpoint: string,
  uid: bigint,
  token: string,
  batchAnswers = true,
  ca?: string,
): Promise<FpnnWsClient> {
  const c = await FpnnWsClient.connect(clientEndpoint, batchAnswers, ca);
  const answer = await c.quest('auth', { pid: TEST_PID, uid, token, version: 'bench' });
  if (answer.ok !== true) throw new Error(`login of ${uid} refused`);
  return c;
}

/** A Socket.IO client (websocket transport only) in `rooms` (joined by the server from the query). */
export function socketIoConnect(endpoint: string, rooms: readonly string[]): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(`http://${endpoint}`, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      query: { rooms: rooms.join(',') },
      timeout: 60_000,
    });
    socket.once('joined', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/**
 * A bare ws client in `rooms`, reachable as `uid` when given (the server answers the text message
 * `joined` when it has added it).
 */
export function wsConnect(endpoint: string, rooms: readonly string[], uid?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const query = `rooms=${encodeURIComponent(rooms.join(','))}${uid ? `&uid=${uid}` : ''}`;
    const ws = new WebSocket(`ws://${endpoint}/?${query}`, {
      perMessageDeflate: false,
      generateMask: zeroMask,
    });
    ws.binaryType = 'nodebuffer';
    const onFirst = (): void => resolve(ws);
    ws.once('message', onFirst);
    ws.once('error', reject);
  });
}

// ------------------------------------------------------------------------------------------------
// IPC: the controlling process sends `{type, ...}`; each handler's result goes back as `${type}:done`.

type Handler = (m: Record<string, unknown>) => unknown;

export function serveIpc(handlers: Record<string, Handler>, onExit: () => void): void {
  const send = (m: Record<string, unknown>): void => {
    if (process.connected) process.send!(m, undefined, undefined, () => undefined);
  };
  process.on('message', (m: Record<string, unknown>) => {
    const handler = handlers[m.type as string];
    if (!handler) return send({ type: 'error', message: `unknown command ${String(m.type)}` });
    Promise.resolve()
      .then(() => handler(m))
      .then(
        (result) => send({ ...(result as Record<string, unknown> | undefined), type: `${String(m.type)}:done` }),
        (err: Error) => send({ type: 'error', message: err.stack ?? err.message }),
      );
  });
  const exit = (): void => {
    try {
      onExit();
    } finally {
      process.exit(0);
    }
  };
  process.on('disconnect', exit); // the controlling process is gone
  process.on('SIGTERM', exit);
}

/** Posts a message to the controlling process (progress reports). */
export function report(m: Record<string, unknown>): void {
  if (process.connected) process.send!(m, undefined, undefined, () => undefined);
}
