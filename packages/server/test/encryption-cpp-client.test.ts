/**
 * FPNN protocol and `*key` encryption checks against a real server over real sockets, for
 * behaviour of the official SDKs that the other suites do not exercise (spec/fpnn.md §1, §6).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { decodePayload, encodePayload, encodeQuest, Flag, FrameDecoder, type Frame } from '@rtm/fpnn';
import { clientKeyExchange, derivePublicKeyFormats } from '@rtm/fpnn/crypto';
import { recordingSocket, startTestServer, until, type TestServer } from '@rtm/testkit';

/**
 * The `*key` quest payload as the C++ FPNN client (fpnn core/TCPClient.cpp, fpnn-sdk-cpp) writes it:
 * `qw.param("publicKey", publicKey)` with a std::string, which FPNN packs as msgpack **str**, not
 * bin, holding the 64 raw key bytes (not UTF-8 text); then `streamMode` (bool) and `bits` (int).
 */
function cppKeyPayload(publicKey: Uint8Array, streamMode: boolean, bits: 128 | 256): Uint8Array {
  const key = (name: string): Buffer => Buffer.concat([Buffer.from([0xa0 | name.length]), Buffer.from(name)]);
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([0x83]),
      key('publicKey'),
      Buffer.from([0xd9, publicKey.length]), // str8
      publicKey,
      key('streamMode'),
      Buffer.from([streamMode ? 0xc3 : 0xc2]),
      key('bits'),
      Buffer.from([0xcd, bits >> 8, bits & 0xff]), // uint16
    ]),
  );
}

describe('*key as the C++ FPNN client sends it (publicKey as msgpack str)', () => {
  const privateKey = randomBytes(32).toString('hex');
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ encryptionKey: privateKey });
  });
  after(async () => {
    await server.close();
  });

  for (const streamMode of [false, true]) {
    for (const bits of [128, 256] as const) {
      it(`${streamMode ? 'stream' : 'package'} mode, ${bits}-bit: the key is read from its raw bytes and the connection works`, async () => {
        // Many attempts: a random 64-byte key is almost never valid UTF-8, which is what broke it.
        for (let attempt = 0; attempt < 4; attempt++) {
          const kx = clientKeyExchange(derivePublicKeyFormats(privateKey).raw, { bits, streamMode });
          const payload = cppKeyPayload(kx.questPayload.publicKey, streamMode, bits);
          assert.equal(decodePayload(Flag.MSGPACK, payload).bits, bits);
          const s = await recordingSocket(server.serverPort);
          try {
            // The C++ client encrypts right after its first package (encryptAfterFirstPackageSent).
            const ping = encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 2);
            s.socket.write(Buffer.concat([encodeQuest('*key', payload, Flag.MSGPACK, false, 1), kx.ciphers.encrypt(ping)]));
            const decoder = new FrameDecoder();
            let got: Frame[] = [];
            let seen = 0;
            const ok = await until(() => {
              const bytes = s.received();
              if (bytes.length > seen) {
                for (const plain of kx.ciphers.decrypt(bytes.subarray(seen))) got = got.concat(decoder.push(plain));
                seen = bytes.length;
              }
              return got.length >= 2 || s.closed();
            }, 3000);
            assert.ok(ok, 'no answers');
            assert.equal(s.closed(), false, 'the server closed the connection: it could not read the str publicKey');
            assert.deepEqual(
              got.map((f) => [f.kind, f.seq, f.kind === 'answer' && f.ok]),
              [
                ['answer', 1, true],
                ['answer', 2, true],
              ],
            );
            assert.equal(typeof decodePayload(got[1]!.flag, got[1]!.payload).ts, 'bigint');
          } finally {
            s.socket.destroy();
          }
        }
      });
    }
  }
});
