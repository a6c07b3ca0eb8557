import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createECDH, createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { decodePayload, encodeAnswer, encodePayload, encodeQuest, Flag, FpnnProtocolError, FrameDecoder, type Frame } from '@rtm/fpnn';
import {
  clientKeyExchange,
  createFrameCipher,
  decodeKeyQuestPayload,
  deriveKeyMaterial,
  derivePublicKeyFormats,
  KeyExchangeError,
  PackageCipher,
  parsePublicKey,
  parseServerPrivateKey,
  serverKeyExchange,
  SessionKeys,
  StreamCipher,
  type CurveName,
  type FrameCipher,
  type KeyBits,
} from '@rtm/fpnn/crypto';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/**
 * Known answers computed outside Node, with Python `cryptography` 48 (the library the Python SDK uses):
 * server private scalar 0x11…11, client 0x22…22; f1 = the `*key` answer (seq 1, `{}`), f2 = a `*ping`
 * quest (seq 2, `{}`). `package` is len ‖ CFB(f1) ‖ len ‖ CFB(f2) with a fresh cipher per frame,
 * `stream` is CFB(f1 ‖ f2) with one cipher.
 */
const KAT = {
  serverPrivate: '11'.repeat(32),
  f1: '46504e4e01800200010000000100000080',
  f2: '46504e4e0180010501000000020000002a70696e6780',
  curves: {
    secp256k1: {
      serverPublicRaw:
        '4f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa385b6b1b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1',
      clientPublicRaw:
        '466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276728176c3c6431f8eeda4538dc37c865e2784f3a9e77d044f33e407797e1278a',
      secret: '77e0510d5042e2f5e9e59c977b81eeed590cf7d20c1c51da451a8eaa9fdc45ff',
      iv: 'e75f08bfdf79291517707f3c0132a141',
      128: {
        key: '77e0510d5042e2f5e9e59c977b81eeed',
        package: '11000000b28c24810b0f236720c2bedd8bf1fd8ba316000000b28c24810b0f206220c2bedd88f1fd8b6036d0f54bb8',
        stream: 'b28c24810b0f236720c2bedd8bf1fd8ba3be8cb9417ae1ba2577357fb526455adab1c89b6d7967',
      },
      256: {
        key: '77e0510d5042e2f5e9e59c977b81eeed590cf7d20c1c51da451a8eaa9fdc45ff',
        package: '11000000ebd8b9db429c59b4fae1d12b4f5a25f7f416000000ebd8b9db429c5ab1fae1d12b4c5a25f70dff724602cc',
        stream: 'ebd8b9db429c59b4fae1d12b4f5a25f7f452e5032d5bef4aa73291fb04f96339496bafc4ce3548',
      },
    },
    prime256v1: {
      serverPublicRaw:
        '0217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794',
      clientPublicRaw:
        'd65a93977caa3d1b081852ff57a79e465f1660577304baead505dd3a48589cf350185e895372df6221ea3a137557e473fddb6755f05bd507c3c533fce9c91285',
      secret: 'ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6',
      iv: '24b51009b5ff60001591fddbea919c1a',
      128: {
        key: 'ccfc261f58193c98ca4ad4a53bbac6f0',
        package: '110000001786c54ad36949968bcda009f12f1a56d8160000001786c54ad3694a938bcda009f22f1a560a92443f10e3',
        stream: '1786c54ad36949968bcda009f12f1a56d80ff5efdd9548ea6a8e9750b79942bbe9b68e4740554c',
      },
      256: {
        key: 'ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6',
        package: '11000000d75024a22352b53ca526c9cb0defe12dff16000000d75024a22352b639a526c9cb0eefe12dc6c621d8ea9b',
        stream: 'd75024a22352b53ca526c9cb0defe12dff580ca72e69331c15241c7de19970f3d395cbdcdbe0de',
      },
    },
  },
} as const;

const CURVES: CurveName[] = ['secp256k1', 'prime256v1', 'secp256r1'];
const BITS: KeyBits[] = [128, 256];

/** A mix of frames: tiny answers, quests with bigint ids, a 70 KB one, a JSON one. */
function sampleFrames(): Uint8Array[] {
  const frames: Uint8Array[] = [];
  frames.push(encodeAnswer(1, encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK));
  frames.push(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 2));
  frames.push(
    encodeQuest(
      'sendmsg',
      encodePayload(Flag.MSGPACK, { from: 1001n, to: 2n ** 62n + 7n, mid: 81985529216486895n, msg: 'hi' }),
      Flag.MSGPACK,
      false,
      3,
    ),
  );
  frames.push(encodeQuest('kickout', encodePayload(Flag.MSGPACK, { ce: 'x' }), Flag.MSGPACK, true));
  frames.push(encodeQuest('big', encodePayload(Flag.MSGPACK, { data: new Uint8Array(70_000).fill(7) }), Flag.MSGPACK, false, 4));
  frames.push(encodeAnswer(5, encodePayload(Flag.JSON, { code: 20004, ex: 'unknown' }), Flag.JSON, false));
  for (let i = 0; i < 14; i++)
    frames.push(encodeQuest('m' + i, encodePayload(Flag.MSGPACK, { i, s: 'x'.repeat(i * 3) }), Flag.MSGPACK, false, 10 + i));
  return frames;
}

/** Feeds ciphertext chunks through a cipher and a FrameDecoder; returns the frames as re-encoded bytes. */
function receiveAll(cipher: FrameCipher, chunks: Uint8Array[]): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  for (const chunk of chunks) for (const plain of cipher.decrypt(chunk)) frames.push(...decoder.push(plain));
  assert.equal(decoder.bufferedBytes, 0);
  assert.equal(cipher.bufferedBytes, 0);
  return frames;
}

function frameBytes(frame: Frame): Uint8Array {
  return frame.kind === 'answer'
    ? encodeAnswer(frame.seq, frame.payload, frame.flag, frame.ok)
    : encodeQuest(frame.method, frame.payload, frame.flag, frame.oneway, frame.seq);
}

function pair(streamMode: boolean, bits: KeyBits = 128, curve: CurveName = 'secp256k1'): { client: FrameCipher; server: FrameCipher } {
  const serverKey = parseServerPrivateKey(randomBytes(32), curve);
  const formats = derivePublicKeyFormats(serverKey);
  const client = clientKeyExchange(formats.raw, { curve, bits, streamMode });
  const keys = serverKeyExchange(serverKey, client.questPayload);
  return { client: client.ciphers, server: keys.createCipher() };
}

describe('crypto: known answers (spec/fpnn.md §6, computed with Python cryptography)', () => {
  for (const curve of ['secp256k1', 'prime256v1'] as const) {
    const v = KAT.curves[curve];
    it(`${curve}: public key, secret-derived key/iv and ciphertext`, () => {
      assert.equal(hex(derivePublicKeyFormats(KAT.serverPrivate, curve).raw), v.serverPublicRaw);
      for (const bits of BITS) {
        for (const streamMode of [false, true]) {
          const keys = serverKeyExchange(
            { privateKey: KAT.serverPrivate, curve },
            { publicKey: unhex(v.clientPublicRaw), bits, streamMode },
          );
          assert.equal(hex(keys.iv), v.iv);
          assert.equal(hex(keys.key), v[bits].key);
          assert.equal(keys.bits, bits);
          assert.equal(keys.streamMode, streamMode);
          const sender = keys.createCipher();
          const wire = concat([sender.encrypt(unhex(KAT.f1)), sender.encrypt(unhex(KAT.f2))]);
          assert.equal(hex(wire), streamMode ? v[bits].stream : v[bits].package, `${curve} ${bits} ${streamMode ? 'stream' : 'package'}`);
          // And the other side decrypts it back to the two frames.
          const frames = receiveAll(keys.createCipher(), [wire]);
          assert.deepEqual(
            frames.map((f) => hex(frameBytes(f))),
            [KAT.f1, KAT.f2],
          );
        }
      }
      // The derivation itself, from the secret.
      assert.equal(hex(deriveKeyMaterial(unhex(v.secret), 128).key), v[128].key);
      assert.equal(hex(deriveKeyMaterial(unhex(v.secret), 256).iv), v.iv);
    });
  }

  it('derivation follows the spec text, computed here with node:crypto primitives directly', () => {
    for (const curve of ['secp256k1', 'prime256v1'] as const) {
      for (const bits of BITS) {
        const serverPriv = randomBytes(32);
        const server = createECDH(curve);
        server.setPrivateKey(serverPriv);
        const ex = clientKeyExchange(server.getPublicKey(), { curve, bits });
        // Step 2: secret = X of serverPrivate × clientPublic, via computeSecret(0x04 ‖ publicKey).
        const secret = server.computeSecret(Buffer.concat([Buffer.from([0x04]), ex.questPayload.publicKey]));
        const iv = createHash('md5').update(secret).digest();
        const key = bits === 128 ? secret.subarray(0, 16) : secret;
        assert.equal(hex(ex.keys.iv), hex(iv));
        assert.equal(hex(ex.keys.key), hex(key));
        const frame = encodeQuest('sendmsg', encodePayload(Flag.MSGPACK, { mid: 2n ** 60n }), Flag.MSGPACK, false, 9);
        const expected = createCipheriv(`aes-${bits}-cfb`, key, iv).update(frame);
        const pkg = createFrameCipher({ key: ex.keys.key, iv: ex.keys.iv, streamMode: false }).encrypt(frame);
        assert.equal(Buffer.from(pkg).readUInt32LE(0), frame.length);
        assert.equal(hex(pkg.subarray(4)), hex(expected));
        assert.equal(hex(new StreamCipher(ex.keys.key, ex.keys.iv).encrypt(frame)), hex(expected));
      }
    }
  });

  it('bits 256 with a secret that is not 32 bytes uses SHA-256(secret)', () => {
    const secret = randomBytes(28);
    const { key, iv } = deriveKeyMaterial(secret, 256);
    assert.equal(hex(key), createHash('sha256').update(secret).digest('hex'));
    assert.equal(hex(iv), createHash('md5').update(secret).digest('hex'));
  });
});

describe('crypto: key exchange', () => {
  for (const curve of CURVES) {
    for (const bits of BITS) {
      it(`client and server derive the same key and iv (${curve}, ${bits} bits)`, () => {
        const serverKey = parseServerPrivateKey(randomBytes(32), curve);
        const formats = derivePublicKeyFormats(serverKey);
        for (const pub of [formats.raw, formats.uncompressed, formats.compressed, formats.pem, formats.der, hex(formats.raw)]) {
          const client = clientKeyExchange(pub, { curve, bits, streamMode: true });
          assert.equal(client.questPayload.publicKey.length, 64);
          assert.equal(client.questPayload.bits, bits);
          assert.equal(client.questPayload.streamMode, true);
          const server = serverKeyExchange(serverKey, client.questPayload);
          assert.equal(hex(server.key), hex(client.keys.key));
          assert.equal(hex(server.iv), hex(client.keys.iv));
          assert.equal(server.key.length, bits / 8);
          assert.equal(server.streamMode, true);
          assert.ok(server instanceof SessionKeys);
        }
      });
    }
  }

  it('the *key quest payload survives msgpack (publicKey as bin) and JSON-less defaults apply', () => {
    const serverKey = parseServerPrivateKey(randomBytes(32));
    const client = clientKeyExchange(derivePublicKeyFormats(serverKey).compressed);
    const bytes = encodePayload(Flag.MSGPACK, client.questPayload);
    assert.equal(bytes.includes(0xc4), true); // bin 8
    const decoded = decodePayload(Flag.MSGPACK, bytes);
    const keys = serverKeyExchange(serverKey, decoded);
    assert.equal(hex(keys.key), hex(client.keys.key));
    // Defaults: no bits → 128, no streamMode → package mode; nil = absent.
    const bare = serverKeyExchange(serverKey, { publicKey: client.questPayload.publicKey, bits: null, streamMode: undefined });
    assert.equal(bare.bits, 128);
    assert.equal(bare.streamMode, false);
    assert.equal(bare.createCipher().mode, 'package');
    // bigint bits (an int64 on the wire) and 0/1 streamMode are accepted.
    const loose = serverKeyExchange(serverKey, { publicKey: client.questPayload.publicKey, bits: 128n, streamMode: 1 });
    assert.equal(loose.streamMode, true);
    // A str publicKey whose characters are the bytes (latin-1) is accepted.
    const asStr = Buffer.from(client.questPayload.publicKey).toString('latin1');
    assert.equal(hex(serverKeyExchange(serverKey, { publicKey: asStr }).key), hex(client.keys.key));
  });

  it('decodeKeyQuestPayload reads a str publicKey (C++ FPNN client) as its raw bytes, whatever precedes it', () => {
    const serverKey = parseServerPrivateKey(randomBytes(32));
    const str = (s: string): Buffer => Buffer.concat([Uint8Array.of(0xa0 | s.length), Buffer.from(s)]);
    for (let i = 0; i < 20; i++) {
      const client = clientKeyExchange(derivePublicKeyFormats(serverKey).raw, { bits: 256 });
      const pk = Buffer.from(client.questPayload.publicKey);
      for (const header of [Uint8Array.of(0xd9, 64), Uint8Array.of(0xda, 0, 64), Uint8Array.of(0xdb, 0, 0, 0, 64)]) {
        const bytes = new Uint8Array(
          Buffer.concat([
            Uint8Array.of(0xde, 0, 4), // map16 of 4
            str('extra'),
            Buffer.from('93c40201029181a178d7ff0000000000000000cb3ff0000000000000', 'hex'), // [bin, [{x: timestamp ext}], 1.0]: skipped
            str('bits'),
            Uint8Array.of(0xcd, 1, 0),
            str('publicKey'),
            header,
            pk,
            str('streamMode'),
            Uint8Array.of(0xc3),
          ]),
        );
        assert.equal(typeof decodePayload(Flag.MSGPACK, bytes).publicKey, 'string');
        const decoded = decodeKeyQuestPayload(Flag.MSGPACK, bytes);
        assert.ok(decoded.publicKey instanceof Uint8Array);
        assert.equal(hex(decoded.publicKey), hex(pk));
        const keys = serverKeyExchange(serverKey, decoded);
        assert.equal(hex(keys.key), hex(client.keys.key));
        assert.equal(keys.streamMode, true);
      }
    }
    // bin stays bin; JSON is decoded as usual.
    const client = clientKeyExchange(derivePublicKeyFormats(serverKey).raw);
    const decoded = decodeKeyQuestPayload(Flag.MSGPACK, encodePayload(Flag.MSGPACK, client.questPayload));
    assert.equal(hex(decoded.publicKey as Uint8Array), hex(client.questPayload.publicKey));
    assert.deepEqual({ ...decodeKeyQuestPayload(Flag.JSON, new TextEncoder().encode('{"bits":128}')) }, { bits: 128 });
  });

  it('bad bits, bad key length, missing or invalid point are rejected with KeyExchangeError', () => {
    const serverKey = parseServerPrivateKey(randomBytes(32));
    const good = clientKeyExchange(derivePublicKeyFormats(serverKey).raw).questPayload;
    const cases: Array<[string, Record<string, unknown>]> = [
      ['bits 64', { ...good, bits: 64 }],
      ['bits 512', { ...good, bits: 512 }],
      ['bits "128"', { ...good, bits: '128' }],
      ['bits 128.5', { ...good, bits: 128.5 }],
      ['streamMode "yes"', { ...good, streamMode: 'yes' }],
      ['no publicKey', { bits: 128 }],
      ['publicKey number', { publicKey: 5 }],
      ['publicKey 63 bytes that are no point however padded', { publicKey: good.publicKey.subarray(1) }],
      ['publicKey 61 bytes', { publicKey: good.publicKey.subarray(3) }],
      ['publicKey 65 bytes (0x04 prefix)', { publicKey: concat([Uint8Array.of(4), good.publicKey]) }],
      ['publicKey 33 bytes', { publicKey: new Uint8Array(33) }],
      ['publicKey empty', { publicKey: new Uint8Array(0) }],
      ['publicKey not on the curve', { publicKey: new Uint8Array(64).fill(1) }],
      ['publicKey all zero', { publicKey: new Uint8Array(64) }],
    ];
    for (const [name, quest] of cases) {
      assert.throws(
        () => serverKeyExchange(serverKey, quest),
        (err: unknown) => err instanceof KeyExchangeError && err instanceof FpnnProtocolError && /\*key|bits|point/.test(err.message),
        name,
      );
    }
    assert.throws(() => deriveKeyMaterial(randomBytes(32), 192 as KeyBits), KeyExchangeError);
    assert.throws(() => clientKeyExchange(derivePublicKeyFormats(serverKey).raw, { bits: 192 as KeyBits }), /bits must be 128 or 256/);
  });

  it("a public key whose coordinates lost their leading zero bytes (the Java SDK's 1 in 128) gives the same keys", () => {
    for (const curve of ['secp256k1', 'secp256r1'] as const) {
      const server = createECDH(curve === 'secp256r1' ? 'prime256v1' : curve);
      server.generateKeys();
      // getPrivateKey() drops leading zero bytes (1 in 256 keys is 31 bytes): padded to the 32 raw bytes.
      const raw = new Uint8Array(32);
      const scalar = server.getPrivateKey();
      raw.set(scalar, 32 - scalar.length);
      const serverKey = parseServerPrivateKey(raw, curve);
      const found = { x: false, y: false };
      for (let i = 0; i < 20_000 && !(found.x && found.y); i++) {
        const client = clientKeyExchange(new Uint8Array(server.getPublicKey()).subarray(1), { curve });
        const key = client.questPayload.publicKey;
        const side = key[0] === 0 ? 'x' : key[32] === 0 ? 'y' : undefined;
        if (!side || found[side]) continue;
        found[side] = true;
        // As BigInteger.toByteArray() writes it: the coordinate without its leading zero byte.
        const short = side === 'x' ? key.subarray(1) : concat([key.subarray(0, 32), key.subarray(33)]);
        assert.equal(short.length, 63);
        const keys = serverKeyExchange(serverKey, { publicKey: short, bits: 128 });
        assert.equal(hex(keys.key), hex(client.keys.key), `${curve}: ${side} short`);
        assert.equal(hex(keys.iv), hex(client.keys.iv));
      }
      assert.ok(found.x && found.y, `${curve}: keys with a short X and a short Y were found`);
    }
  });

  it('client rejects malformed server public keys clearly', () => {
    assert.throws(() => clientKeyExchange(new Uint8Array(10)), /10 bytes: expected 64/);
    assert.throws(() => clientKeyExchange(concat([Uint8Array.of(2), new Uint8Array(32).fill(0xff)])), /not a point|compressed/);
    assert.throws(() => clientKeyExchange(new Uint8Array(64).fill(1)), /not a valid/);
    assert.throws(() => clientKeyExchange('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----'), /PEM could not be read/);
    assert.throws(() => clientKeyExchange('zz'), /PEM or hex/);
    assert.throws(() => clientKeyExchange(new Uint8Array(64), { curve: 'secp384r1' as CurveName }), /unsupported FPNN curve/);
  });
});

describe('crypto: server key formats', () => {
  for (const namedCurve of ['secp256k1', 'prime256v1'] as const) {
    it(`reads raw, hex, SEC1 PEM, PKCS#8 PEM and DER keys (${namedCurve})`, () => {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve });
      const sec1 = privateKey.export({ type: 'sec1', format: 'pem' }) as string;
      const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      const der = privateKey.export({ type: 'pkcs8', format: 'der' });
      assert.match(sec1, /BEGIN EC PRIVATE KEY/);
      assert.match(pkcs8, /BEGIN PRIVATE KEY/);
      const fromSec1 = parseServerPrivateKey(sec1);
      assert.equal(fromSec1.curve, namedCurve);
      assert.equal(fromSec1.privateKey.length, 32);
      for (const input of [pkcs8, Buffer.from(sec1), Buffer.from(pkcs8), der]) {
        const k = parseServerPrivateKey(input);
        assert.equal(k.curve, namedCurve);
        assert.equal(hex(k.privateKey), hex(fromSec1.privateKey));
      }
      const rawHex = hex(fromSec1.privateKey);
      assert.equal(hex(parseServerPrivateKey(rawHex, namedCurve).privateKey), rawHex);
      assert.equal(hex(parseServerPrivateKey('0x' + rawHex.toUpperCase() + '\n', namedCurve).privateKey), rawHex);
      assert.equal(hex(parseServerPrivateKey(Buffer.from(rawHex + '\n'), namedCurve).privateKey), rawHex);
      assert.equal(hex(parseServerPrivateKey(fromSec1.privateKey, namedCurve).privateKey), rawHex);

      // Public forms agree with node's own export and with each other.
      const formats = derivePublicKeyFormats(sec1);
      assert.match(formats.pem, /^-----BEGIN PUBLIC KEY-----/);
      assert.equal(formats.raw.length, 64);
      assert.equal(formats.uncompressed.length, 65);
      assert.equal(formats.uncompressed[0], 4);
      assert.equal(formats.compressed.length, 33);
      assert.equal(hex(formats.uncompressed.subarray(1)), hex(formats.raw));
      assert.equal(hex(formats.der.subarray(formats.der.length - 65)), hex(formats.uncompressed));
      for (const pub of [formats.pem, formats.der, formats.compressed, formats.uncompressed, formats.raw]) {
        const parsed = parsePublicKey(pub, namedCurve);
        assert.equal(hex(parsed.uncompressed), hex(formats.uncompressed));
        assert.equal(parsed.curve, namedCurve);
      }
      // A PEM carries its curve: the client needs no curve option for it.
      assert.equal(parsePublicKey(formats.pem).curve, namedCurve);
    });
  }

  it('rejects bad private keys with a message that names the problem', () => {
    assert.throws(() => parseServerPrivateKey(new Uint8Array(32)), /invalid secp256k1 private key/);
    assert.throws(() => parseServerPrivateKey(new Uint8Array(32).fill(0xff)), /invalid secp256k1 private key/);
    assert.throws(() => parseServerPrivateKey('abc'), /64 hex characters or a PEM/);
    assert.throws(() => parseServerPrivateKey(new Uint8Array(31).fill(1)), /neither raw/);
    assert.throws(() => parseServerPrivateKey('11'.repeat(32), 'ed25519' as CurveName), /unsupported FPNN curve/);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = privateKey.export({ type: 'sec1', format: 'pem' }) as string;
    assert.throws(() => parseServerPrivateKey(pem, 'secp256k1'), /on curve prime256v1, but curve secp256k1/);
    assert.equal(parseServerPrivateKey(pem, 'secp256r1').curve, 'prime256v1');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.throws(() => parseServerPrivateKey(rsa), /expected an EC key/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.throws(() => parseServerPrivateKey(p384), /unsupported EC key curve/);
  });
});

describe('crypto: package and stream mode framing', () => {
  for (const streamMode of [false, true]) {
    const mode = streamMode ? 'stream' : 'package';
    for (const bits of BITS) {
      it(`${mode} mode, ${bits} bits: many frames round trip coalesced, byte by byte, and split at every boundary`, () => {
        const frames = sampleFrames();
        const expected = frames.map(hex);
        for (const direction of ['client→server', 'server→client']) {
          const { client, server } = pair(streamMode, bits);
          const [tx, rx] = direction === 'client→server' ? [client, server] : [server, client];
          const wire = concat(frames.map((f) => tx.encrypt(f)));
          const prefix = streamMode ? 0 : 4 * frames.length;
          assert.equal(wire.length, frames.reduce((n, f) => n + f.length, 0) + prefix);
          // Coalesced: the whole stream in one chunk (a fresh pair per layout, ciphers are stateful).
          const once = pair(streamMode, bits);
          const onceWire = concat(frames.map((f) => once.client.encrypt(f)));
          assert.deepEqual(
            receiveAll(once.server, [onceWire]).map((f) => hex(frameBytes(f))),
            expected,
          );
          // One byte at a time.
          assert.deepEqual(
            receiveAll(
              rx,
              [...wire].map((b) => Uint8Array.of(b)),
            ).map((f) => hex(frameBytes(f))),
            expected,
          );
        }
        // Split in two at every byte boundary of a short stream (the small frames only).
        const small = frames.filter((f) => f.length < 200).slice(0, 6);
        const smallHex = small.map(hex);
        const keys = (() => {
          const serverKey = parseServerPrivateKey(randomBytes(32));
          const c = clientKeyExchange(derivePublicKeyFormats(serverKey).raw, { bits, streamMode });
          return serverKeyExchange(serverKey, c.questPayload);
        })();
        const tx = keys.createCipher();
        const streamWire = concat(small.map((f) => tx.encrypt(f)));
        for (let cut = 0; cut <= streamWire.length; cut++) {
          const got = receiveAll(keys.createCipher(), [streamWire.subarray(0, cut), streamWire.subarray(cut)]);
          assert.deepEqual(
            got.map((f) => hex(frameBytes(f))),
            smallHex,
            `cut at ${cut}`,
          );
        }
        // Random chunking, several times.
        for (let round = 0; round < 20; round++) {
          const { client, server } = pair(streamMode, bits);
          const w = concat(frames.map((f) => client.encrypt(f)));
          const chunks: Uint8Array[] = [];
          for (let at = 0; at < w.length;) {
            const n = 1 + Math.floor(Math.random() * (Math.random() < 0.5 ? 16 : 40_000));
            chunks.push(w.subarray(at, at + n));
            at += n;
          }
          assert.deepEqual(
            receiveAll(server, chunks).map((f) => hex(frameBytes(f))),
            expected,
          );
        }
      });
    }
  }

  it('package mode: each frame uses a fresh cipher, so equal frames encrypt equally; stream mode does not', () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const frame = encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1);
    const pkg = new PackageCipher(key, iv);
    assert.equal(hex(pkg.encrypt(frame)), hex(pkg.encrypt(frame)));
    const stream = new StreamCipher(key, iv);
    assert.notEqual(hex(stream.encrypt(frame)), hex(stream.encrypt(frame)));
  });

  it('package mode: an oversize length closes from the 4-byte prefix alone, before any body arrives', () => {
    const cipher = new PackageCipher(randomBytes(16), randomBytes(16), { maxFrameBytes: 1024 });
    assert.deepEqual(cipher.decrypt(Uint8Array.of(0x01, 0x04)), []);
    assert.equal(cipher.bufferedBytes, 2);
    assert.throws(
      () => cipher.decrypt(Uint8Array.of(0x00, 0x00)),
      (e: unknown) => e instanceof FpnnProtocolError && /1025 bytes exceeds the 1024-byte limit/.test(e.message),
    );
    assert.throws(() => cipher.decrypt(Uint8Array.of(1)), FpnnProtocolError); // unusable afterwards
    const huge = new PackageCipher(randomBytes(16), randomBytes(16));
    assert.throws(() => huge.decrypt(Uint8Array.of(0xff, 0xff, 0xff, 0xff)), /exceeds the 8388608-byte limit/);
    const tiny = new PackageCipher(randomBytes(16), randomBytes(16));
    assert.throws(() => tiny.decrypt(Uint8Array.of(0, 0, 0, 0)), /cannot hold a frame/);
    // Exactly the limit is fine, and is buffered no further than what arrived (the prefix counts
    // until its package is whole: a prefix alone is a package open).
    const edge = new PackageCipher(randomBytes(16), randomBytes(16), { maxFrameBytes: 1024 });
    assert.deepEqual(edge.decrypt(Uint8Array.of(0x00, 0x04, 0, 0)), []);
    assert.equal(edge.bufferedBytes, 4);
    assert.deepEqual(edge.decrypt(new Uint8Array(100)), []);
    assert.equal(edge.bufferedBytes, 104);
    assert.equal(edge.decrypt(new Uint8Array(924)).length, 1);
    assert.equal(edge.bufferedBytes, 0);
  });

  it('stream mode: the FrameDecoder enforces the frame limit on the decrypted bytes', () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const tx = new StreamCipher(key, iv);
    const rx = new StreamCipher(key, iv);
    const decoder = new FrameDecoder(1024);
    const header = encodeQuest('x', new Uint8Array(2000), Flag.MSGPACK, false, 1).subarray(0, 16);
    assert.throws(() => {
      for (const plain of rx.decrypt(tx.encrypt(header))) decoder.push(plain);
    }, /exceeds the 1024-byte limit/);
  });

  it('rejects bad key material when a cipher is built', () => {
    assert.throws(() => new PackageCipher(new Uint8Array(24), new Uint8Array(16)), /AES key must be 16 or 32 bytes/);
    assert.throws(() => new StreamCipher(new Uint8Array(16), new Uint8Array(8)), /IV must be 16 bytes/);
  });
});

describe('crypto: switching a connection at the *key frame boundary (spec/fpnn.md §6 step 5, 7)', () => {
  for (const streamMode of [false, true]) {
    it(`${streamMode ? 'stream' : 'package'} mode: *key in plaintext, then ciphertext in the same read; encrypted *key answer`, () => {
      const serverKey = parseServerPrivateKey(randomBytes(32));
      const client = clientKeyExchange(derivePublicKeyFormats(serverKey).pem, { streamMode, bits: 256 });
      // Go-SDK style: the client writes *key and, without waiting, two encrypted quests.
      const keyQuest = encodeQuest('*key', encodePayload(Flag.MSGPACK, client.questPayload), Flag.MSGPACK, false, 1);
      const q2 = encodeQuest('auth', encodePayload(Flag.MSGPACK, { pid: 1, uid: 2n ** 60n }), Flag.MSGPACK, false, 2);
      const q3 = encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 3);
      const wire = concat([keyQuest, client.ciphers.encrypt(q2), client.ciphers.encrypt(q3)]);

      for (let cut = 0; cut <= wire.length; cut += cut < keyQuest.length + 8 ? 1 : 7) {
        // Server connection: plaintext decoder until *key.
        const decoder = new FrameDecoder();
        let cipher: FrameCipher | undefined;
        const written: Uint8Array[] = [];
        const received: Frame[] = [];
        const onBytes = (chunk: Uint8Array): void => {
          if (cipher) {
            for (const plain of cipher.decrypt(chunk)) received.push(...decoder.push(plain));
            return;
          }
          decoder.append(chunk);
          for (let frame = decoder.next(); frame; frame = cipher ? undefined : decoder.next()) {
            if (frame.kind === 'quest' && frame.method === '*key') {
              const keys = serverKeyExchange(serverKey, decodePayload(frame.flag, frame.payload));
              cipher = keys.createCipher();
              written.push(cipher.encrypt(encodeAnswer(frame.seq, encodePayload(frame.flag, {}), frame.flag)));
              const rest = decoder.takeBuffered();
              for (const plain of cipher.decrypt(rest)) received.push(...decoder.push(plain));
            } else received.push(frame);
          }
        };
        onBytes(wire.subarray(0, cut));
        onBytes(wire.subarray(cut));
        assert.deepEqual(
          received.map((f) => (f.kind === 'quest' ? f.method : 'answer')),
          ['auth', '*ping'],
          `cut ${cut}`,
        );
        assert.deepEqual(decodePayload(Flag.MSGPACK, received[0]!.payload), { pid: 1, uid: 2n ** 60n });
        // The client reads the encrypted *key answer with its cipher (a fresh one per cut, as state moves on).
        const clientRx = createFrameCipher({ key: client.keys.key, iv: client.keys.iv, streamMode });
        const answers = receiveAll(clientRx, written);
        assert.equal(answers.length, 1);
        assert.equal(answers[0]!.kind, 'answer');
        assert.equal(answers[0]!.seq, 1);
        assert.notEqual(hex(written[0]!).slice(0, 8), '46504e4e'); // not plaintext on the wire
      }
    });
  }
});
