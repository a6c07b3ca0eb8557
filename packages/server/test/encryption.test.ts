import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodePayload, encodePayload, encodeQuest, Flag, FrameDecoder, type Payload } from '@rtm/fpnn';
import { clientKeyExchange, derivePublicKeyFormats, type FrameCipher } from '@rtm/fpnn/crypto';
import { recordingSocket, signFields, startTestServer, TEST_PID, TEST_SECRET, uniqueSalt, until, type TestServer } from '@rtm/testkit';
import WebSocket from 'ws';

/** A minimal encrypted FPNN client: `*key` in plaintext, everything after it through the cipher. */
class EncryptedClient {
  private decoder = new FrameDecoder();
  private waiting = new Map<number, (p: { ok: boolean; payload: Payload }) => void>();
  private seq = 1;
  closed = false;
  private constructor(
    private socket: Socket,
    private cipher: FrameCipher,
  ) {}

  static async open(
    port: number,
    publicKey: Uint8Array | string,
    opts: { bits: 128 | 256; streamMode: boolean; pipelineFirstQuest?: boolean; javaShortKey?: boolean },
  ): Promise<{ client: EncryptedClient; first?: Promise<{ ok: boolean; payload: Payload }> }> {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let kx = clientKeyExchange(publicKey, { bits: opts.bits, streamMode: opts.streamMode });
    if (opts.javaShortKey) {
      // The Java SDK's key one time in 128: a coordinate without its leading zero byte (63 bytes).
      while (kx.questPayload.publicKey[0] !== 0) kx = clientKeyExchange(publicKey, { bits: opts.bits, streamMode: opts.streamMode });
      kx.questPayload.publicKey = kx.questPayload.publicKey.subarray(1);
    }
    const client = new EncryptedClient(socket, kx.ciphers);
    let keyAnswered = false;
    socket.on('data', (chunk) => {
      for (const plain of client.cipher.decrypt(chunk)) {
        for (const frame of client.decoder.push(plain)) {
          if (frame.kind !== 'answer') continue;
          const done = client.waiting.get(frame.seq);
          client.waiting.delete(frame.seq);
          done?.({ ok: frame.ok, payload: decodePayload(frame.flag, frame.payload) });
        }
      }
      keyAnswered = true;
    });
    socket.on('close', () => {
      client.closed = true;
      // A *key the server refused closes the connection: nothing waits for ever.
      for (const done of client.waiting.values()) done({ ok: false, payload: {} });
      client.waiting.clear();
    });
    socket.on('error', () => undefined);
    const keySeq = client.seq++;
    const keyAnswer = new Promise<{ ok: boolean; payload: Payload }>((r) => client.waiting.set(keySeq, r));
    const keyFrame = encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, keySeq);
    let first: Promise<{ ok: boolean; payload: Payload }> | undefined;
    if (opts.pipelineFirstQuest) {
      // Go SDK style: the next quest, already encrypted, in the same write as *key.
      const { frame, answer } = client.prepare('*ping', {});
      first = answer;
      socket.write(Buffer.concat([keyFrame, client.cipher.encrypt(frame)]));
    } else socket.write(keyFrame);
    const k = await keyAnswer;
    assert.ok(k.ok && keyAnswered);
    return { client, first };
  }

  private prepare(method: string, payload: Payload): { frame: Uint8Array; answer: Promise<{ ok: boolean; payload: Payload }> } {
    const seq = this.seq++;
    const answer = new Promise<{ ok: boolean; payload: Payload }>((r) => this.waiting.set(seq, r));
    return { frame: encodeQuest(method, encodePayload(Flag.MSGPACK, payload), Flag.MSGPACK, false, seq), answer };
  }

  quest(method: string, payload: Payload = {}): Promise<{ ok: boolean; payload: Payload }> {
    const { frame, answer } = this.prepare(method, payload);
    this.socket.write(this.cipher.encrypt(frame));
    return answer;
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('*key encryption on TCP (ECDH secp256k1 + AES-CFB)', () => {
  const privateKey = randomBytes(32).toString('hex');
  let server: TestServer;
  let publicKey: ReturnType<typeof derivePublicKeyFormats>;
  before(async () => {
    server = await startTestServer({ encryptionKey: privateKey });
    publicKey = derivePublicKeyFormats(privateKey);
  });
  after(async () => {
    await server.close();
  });

  for (const streamMode of [false, true]) {
    for (const bits of [128, 256] as const) {
      it(`${streamMode ? 'stream' : 'package'} mode, ${bits}-bit: signed quests round-trip encrypted`, async () => {
        const { client } = await EncryptedClient.open(server.serverPort, publicKey.pem, { bits, streamMode });
        const salt = uniqueSalt();
        const token = await client.quest('gettoken', { ...signFields('gettoken', TEST_PID, TEST_SECRET, salt), uid: 77n });
        assert.ok(token.ok);
        assert.equal(typeof token.payload.token, 'string');
        for (let i = 0; i < 20; i++) assert.ok((await client.quest('*ping')).ok);
        client.close();
      });
    }
  }

  it("a public key a byte short (the Java SDK drops a coordinate's leading zero) is read as the point it is: calls work", async () => {
    const { client } = await EncryptedClient.open(server.serverPort, publicKey.raw, { bits: 128, streamMode: false, javaShortKey: true });
    const token = await client.quest('gettoken', { ...signFields('gettoken', TEST_PID, TEST_SECRET, uniqueSalt()), uid: 78n });
    assert.ok(token.ok);
    assert.equal(typeof token.payload.token, 'string');
    client.close();
  });

  it('switches at the exact frame boundary when the next quest shares the *key read', async () => {
    const { client, first } = await EncryptedClient.open(server.serverPort, publicKey.raw, {
      bits: 128,
      streamMode: true,
      pipelineFirstQuest: true,
    });
    assert.ok((await first!).ok);
    client.close();
  });

  it('closes without answering on a bad *key, and on *key over WebSocket or after the first quest', async () => {
    const socket = connect(server.serverPort, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const closed = new Promise((r) => socket.once('close', r));
    socket.on('data', () => assert.fail('no answer expected'));
    socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, { publicKey: new Uint8Array(10), bits: 128 }), Flag.MSGPACK, false, 1));
    await closed;
    // A good *key over WebSocket (no FPNN encryption there, spec/fpnn.md §5).
    const ws = new WebSocket(`ws://${server.serverEndpoint}/service/websocket`);
    ws.on('error', () => undefined);
    await new Promise((r) => ws.once('open', r));
    const wsClosed = new Promise((r) => ws.once('close', r));
    ws.on('message', () => assert.fail('no answer expected over WebSocket'));
    const kx = clientKeyExchange(publicKey.raw, { bits: 128, streamMode: false });
    ws.send(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, 1));
    await wsClosed;
  });

  it('closes on a second *key (encrypted, after the first) and on a *key for another server key', async () => {
    for (const wrong of [false, true]) {
      const kx = clientKeyExchange(wrong ? derivePublicKeyFormats(randomBytes(32).toString('hex')).raw : publicKey.raw, {
        bits: 128,
        streamMode: false,
      });
      const s = await recordingSocket(server.serverPort);
      s.socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, 1));
      // An answer comes back either way: with the wrong key the two sides derived different
      // ciphers, and the server cannot tell until the next frame decrypts to garbage.
      await until(() => s.received().length > 0, 2000);
      s.socket.write(
        wrong
          ? kx.ciphers.encrypt(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 2))
          : kx.ciphers.encrypt(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, 2)),
      );
      assert.ok(await until(() => s.closed(), 3000), wrong ? 'wrong key not closed' : 'second *key not closed');
    }
  });

  // spec/fpnn.md §3: oneway quests are never answered; §6: *key is a twoway quest whose answer
  // confirms the switch. A oneway *key is refused as a bad key exchange: closed, no answer.
  it('a oneway *key is never answered: the connection is closed', async () => {
    const kx = clientKeyExchange(publicKey.raw, { bits: 128, streamMode: false });
    const s = await recordingSocket(server.serverPort);
    s.socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, true));
    assert.ok(await until(() => s.closed(), 3000), 'oneway *key not closed');
    assert.equal(s.received().length, 0, `oneway *key got ${s.received().length} bytes back: ${s.received().toString('hex')}`);
  });
});

describe('our server SDK over an encrypted connection', () => {
  it('RTM_ENCRYPTION_KEY as the path of a key file: PEM, hex, 32 raw bytes or DER (the reference keeps it binary)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rtm-keyfile-'));
    try {
      const { privateKey: key } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
      const raw = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
      const pub = derivePublicKeyFormats(new Uint8Array(raw));
      const files: Record<string, string | Uint8Array> = {
        'key.pem': key.export({ format: 'pem', type: 'sec1' }),
        'key.hex': `${raw.toString('hex')}\n`,
        'key.bin': raw,
        'key.der': key.export({ format: 'der', type: 'pkcs8' }),
      };
      for (const [name, contents] of Object.entries(files)) {
        writeFileSync(join(dir, name), contents);
        const s = await startTestServer({ encryptionKey: join(dir, name) });
        try {
          const { client } = await EncryptedClient.open(s.serverPort, pub.pem, { bits: 128, streamMode: false });
          assert.ok((await client.quest('*ping')).ok, name);
          client.close();
        } finally {
          await s.close();
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('connects with *key in both modes and calls work', async () => {
    const { RTMServerClient } = await import('@rtm/server-sdk');
    const privateKey = randomBytes(32).toString('hex');
    const server = await startTestServer({ encryptionKey: privateKey });
    try {
      const pub = derivePublicKeyFormats(privateKey);
      for (const [streamMode, bits] of [
        [false, 128],
        [true, 256],
      ] as const) {
        const sdk = new RTMServerClient({
          pid: TEST_PID,
          secret: TEST_SECRET,
          endpoint: server.serverEndpoint,
          autoReconnect: false,
          encryption: { serverPublicKey: pub.pem, streamMode, bits },
        });
        await sdk.connect();
        const { mid } = await sdk.sendMessage(30, 1n, 2n, `secret ${streamMode}`, '');
        const page = await sdk.getP2PMessage(1n, 2n, true, 1);
        assert.equal(page.messages[0]!.mid, mid);
        await sdk.close();
      }
    } finally {
      await server.close();
    }
  });
});
