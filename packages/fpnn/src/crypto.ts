/**
 * FPNN encryption: ECDH key exchange + AES-CFB (spec/fpnn.md §6). TCP only; Node only (node:crypto),
 * which is why this module is the subpath `@rtm/fpnn/crypto` and not part of the package index.
 *
 * Server side, per TCP connection:
 *
 * ```ts
 * const serverKey = parseServerPrivateKey(configuredKey);         // once, at start-up
 * // ... the FrameDecoder yields the plaintext `*key` quest (first quest only), stop calling next():
 * const keys = serverKeyExchange(serverKey, decodePayload(frame.flag, frame.payload)); // throws → close, no answer
 * const cipher = keys.createCipher({ maxFrameBytes });
 * write = (frame) => socket.write(cipher.encrypt(frame));          // from now on, every frame we write
 * peer.writeAnswer(frame.seq, frame.flag, {});                      // the `*key` answer: already encrypted
 * read = (chunk) => { for (const plain of cipher.decrypt(chunk)) for (const f of decoder.push(plain)) ... };
 * read(decoder.takeBuffered());                                     // bytes after `*key` are ciphertext
 * ```
 *
 * Client side: `clientKeyExchange(serverPublicKey, options)` gives the `*key` quest payload (send it
 * in plaintext) and the connection's `FrameCipher`; encrypt every later frame, decrypt every byte
 * received after the `*key` quest was written.
 */
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  type Cipher,
  type Decipher,
  ECDH,
  type KeyObject,
} from 'node:crypto';
import { decodePayload, type Payload } from './codec.js';
import { FpnnProtocolError } from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES, Flag, HEADER_BYTES, type PayloadFlag, readU32 } from './frame.js';
import { strBytesAt } from './str-bytes.js';

// ---------------------------------------------------------------------------------------------
// Curves and keys

/** Supported curves (spec/fpnn.md §6 proposal). `secp256r1` is an alias of `prime256v1` (NIST P-256). */
export type CurveName = 'secp256k1' | 'prime256v1' | 'secp256r1';
/** The default curve of every RTM SDK. */
export const DEFAULT_CURVE = 'secp256k1' as const;
/** AES key sizes allowed in `*key` (`bits`). */
export type KeyBits = 128 | 256;
export const DEFAULT_KEY_BITS = 128 as const;

interface CurveInfo {
  /** Canonical name, as OpenSSL and `crypto.createECDH` spell it. */
  readonly name: 'secp256k1' | 'prime256v1';
  /** JWK `crv`. */
  readonly jwk: string;
  /** Coordinate / secret size in bytes. */
  readonly size: number;
}

const CURVES: Record<string, CurveInfo> = {
  secp256k1: { name: 'secp256k1', jwk: 'secp256k1', size: 32 },
  prime256v1: { name: 'prime256v1', jwk: 'P-256', size: 32 },
  secp256r1: { name: 'prime256v1', jwk: 'P-256', size: 32 },
  'p-256': { name: 'prime256v1', jwk: 'P-256', size: 32 },
};

function curveInfo(curve: string | undefined): CurveInfo {
  const info = CURVES[(curve ?? DEFAULT_CURVE).toLowerCase()];
  if (!info) throw new TypeError(`unsupported FPNN curve '${curve}': use secp256k1, prime256v1 or secp256r1`);
  return info;
}

/** Canonical curve name (`secp256r1` → `prime256v1`); throws on an unsupported curve. */
export function normalizeCurve(curve: string = DEFAULT_CURVE): 'secp256k1' | 'prime256v1' {
  return curveInfo(curve).name;
}

/** A parsed server private key: the raw scalar (curve size, big-endian) and its curve. */
export interface ServerKey {
  readonly curve: 'secp256k1' | 'prime256v1';
  /** Raw private scalar, 32 bytes for the supported curves. */
  readonly privateKey: Uint8Array;
}

/** Anything `parseServerPrivateKey` reads: raw bytes, hex text, PEM (`EC PRIVATE KEY`/PKCS#8) or DER. */
export type PrivateKeyInput = string | Uint8Array;

const utf8 = new TextDecoder('utf-8', { fatal: false });
const HEX_RE = /^(?:0x)?([0-9a-fA-F]+)$/;

function fromBase64Url(text: string): Buffer {
  return Buffer.from(text, 'base64url');
}

function leftPad(bytes: Uint8Array, size: number): Uint8Array {
  if (bytes.length === size) return bytes;
  if (bytes.length > size) throw new TypeError(`key component of ${bytes.length} bytes is longer than ${size}`);
  const out = new Uint8Array(size);
  out.set(bytes, size - bytes.length);
  return out;
}

function curveOfKeyObject(key: KeyObject): CurveInfo {
  if (key.asymmetricKeyType !== 'ec') throw new TypeError(`expected an EC key, got a ${key.asymmetricKeyType ?? 'symmetric'} key`);
  const named = key.asymmetricKeyDetails?.namedCurve;
  const info = named === undefined ? undefined : CURVES[named.toLowerCase()];
  if (!info) throw new TypeError(`unsupported EC key curve '${named}': use secp256k1 or prime256v1 (secp256r1)`);
  return info;
}

function checkSameCurve(wanted: string | undefined, actual: CurveInfo, what: string): CurveInfo {
  if (wanted !== undefined && curveInfo(wanted).name !== actual.name) {
    throw new TypeError(`${what} is on curve ${actual.name}, but curve ${normalizeCurve(wanted)} was configured`);
  }
  return actual;
}

function validatePrivateScalar(raw: Uint8Array, info: CurveInfo): ECDH {
  const ecdh = createECDH(info.name);
  try {
    ecdh.setPrivateKey(raw);
  } catch (err) {
    throw new TypeError(`invalid ${info.name} private key: ${(err as Error).message}`, { cause: err });
  }
  return ecdh;
}

function privateFromKeyObject(key: KeyObject, curve: string | undefined): ServerKey {
  const info = checkSameCurve(curve, curveOfKeyObject(key), 'the private key');
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.d !== 'string') throw new TypeError('the PEM/DER key holds no private scalar');
  const raw = leftPad(fromBase64Url(jwk.d), info.size);
  validatePrivateScalar(raw, info);
  return Object.freeze({ curve: info.name, privateKey: new Uint8Array(raw) });
}

/**
 * Reads the server's EC private key: 32 raw bytes, 64 hex characters (optional `0x`), a PEM
 * (`-----BEGIN EC PRIVATE KEY-----` SEC1 or `-----BEGIN PRIVATE KEY-----` PKCS#8) given as text or
 * as the bytes of a file, or DER (PKCS#8 / SEC1). A PEM/DER carries its own curve; if `curve` is also
 * given it must match. Throws a `TypeError` that says what is wrong (meant for start-up).
 * @param curve @default 'secp256k1' for raw/hex keys
 */
export function parseServerPrivateKey(input: PrivateKeyInput, curve?: CurveName): ServerKey {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new TypeError('server private key must be a string (hex or PEM) or bytes (raw, PEM or DER)');
  }
  let text: string | undefined;
  if (typeof input === 'string') text = input;
  else if (input.length !== 32) {
    const decoded = utf8.decode(input);
    if (decoded.includes('-----BEGIN') || HEX_RE.test(decoded.trim())) text = decoded;
  }
  if (text !== undefined) {
    const trimmed = text.trim();
    if (trimmed.includes('-----BEGIN')) {
      let key: KeyObject;
      try {
        key = createPrivateKey({ key: trimmed, format: 'pem' });
      } catch (err) {
        throw new TypeError(`server private key PEM could not be read: ${(err as Error).message}`, { cause: err });
      }
      return privateFromKeyObject(key, curve);
    }
    const hex = HEX_RE.exec(trimmed)?.[1];
    const info = curveInfo(curve);
    if (hex === undefined || hex.length !== info.size * 2) {
      throw new TypeError(`server private key must be ${info.size * 2} hex characters or a PEM`);
    }
    const raw = new Uint8Array(Buffer.from(hex, 'hex'));
    validatePrivateScalar(raw, info);
    return Object.freeze({ curve: info.name, privateKey: raw });
  }
  const bytes = input as Uint8Array;
  const info = curveInfo(curve);
  if (bytes.length === info.size) {
    const raw = new Uint8Array(bytes);
    validatePrivateScalar(raw, info);
    return Object.freeze({ curve: info.name, privateKey: raw });
  }
  for (const type of ['pkcs8', 'sec1'] as const) {
    try {
      return privateFromKeyObject(createPrivateKey({ key: Buffer.from(bytes), format: 'der', type }), curve);
    } catch (err) {
      if (err instanceof TypeError && !(err as { code?: string }).code) throw err; // our own message
    }
  }
  throw new TypeError(`server private key of ${bytes.length} bytes is neither raw (${info.size} bytes), PEM nor DER`);
}

/** The server public key in every form an SDK may be configured with (spec/fpnn.md §6). */
export interface PublicKeyFormats {
  readonly curve: 'secp256k1' | 'prime256v1';
  /** SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, uncompressed point): Python and Go SDKs. */
  readonly pem: string;
  /** SubjectPublicKeyInfo DER. */
  readonly der: Uint8Array;
  /** X ‖ Y, 64 bytes (no `0x04` prefix): the form `*key` carries. */
  readonly raw: Uint8Array;
  /** `0x04` ‖ X ‖ Y, 65 bytes. */
  readonly uncompressed: Uint8Array;
  /** `0x02|0x03` ‖ X, 33 bytes: the Node SDK's test key form. */
  readonly compressed: Uint8Array;
}

function toServerKey(server: { privateKey: PrivateKeyInput; curve?: CurveName | undefined } | ServerKey): ServerKey {
  const { privateKey, curve } = server;
  if (privateKey instanceof Uint8Array && privateKey.length === curveInfo(curve).size) {
    return { curve: normalizeCurve(curve), privateKey };
  }
  return parseServerPrivateKey(privateKey, curve);
}

/** Derives the public key formats from a server private key (any `parseServerPrivateKey` input). */
export function derivePublicKeyFormats(privateKey: PrivateKeyInput | ServerKey, curve?: CurveName): PublicKeyFormats {
  const key = typeof privateKey === 'string' || privateKey instanceof Uint8Array ? parseServerPrivateKey(privateKey, curve) : privateKey;
  const info = curveInfo(key.curve);
  const ecdh = validatePrivateScalar(key.privateKey, info);
  const uncompressed = new Uint8Array(ecdh.getPublicKey(null, 'uncompressed'));
  const compressed = new Uint8Array(ecdh.getPublicKey(null, 'compressed'));
  const spki = createPublicKey({
    key: {
      kty: 'EC',
      crv: info.jwk,
      x: Buffer.from(uncompressed.subarray(1, 1 + info.size)).toString('base64url'),
      y: Buffer.from(uncompressed.subarray(1 + info.size)).toString('base64url'),
    },
    format: 'jwk',
  });
  return Object.freeze({
    curve: info.name,
    pem: spki.export({ type: 'spki', format: 'pem' }).toString(),
    der: new Uint8Array(spki.export({ type: 'spki', format: 'der' })),
    raw: uncompressed.slice(1),
    uncompressed,
    compressed,
  });
}

/**
 * Reads a server public key as an SDK is configured with it: raw X‖Y (64 bytes), uncompressed
 * (65, `0x04` first), compressed (33), hex text of any of those, PEM or DER SubjectPublicKeyInfo.
 * Returns the curve and the 65-byte uncompressed point. Throws a `TypeError` on anything else.
 */
export function parsePublicKey(
  input: string | Uint8Array,
  curve?: CurveName,
): { curve: 'secp256k1' | 'prime256v1'; uncompressed: Uint8Array } {
  let text: string | undefined;
  if (typeof input === 'string') text = input.trim();
  else if (input instanceof Uint8Array) {
    if (input.length > 70 && input[0] !== 0x30) text = utf8.decode(input).trim();
  } else throw new TypeError('server public key must be a string (PEM or hex) or bytes');
  if (text !== undefined) {
    if (text.includes('-----BEGIN')) {
      let key: KeyObject;
      try {
        key = createPublicKey({ key: text, format: 'pem' });
      } catch (err) {
        throw new TypeError(`server public key PEM could not be read: ${(err as Error).message}`, { cause: err });
      }
      return publicFromKeyObject(key, curve);
    }
    const hex = HEX_RE.exec(text)?.[1];
    if (hex === undefined || hex.length % 2 !== 0) throw new TypeError('server public key text must be a PEM or hex');
    return parsePublicKey(new Uint8Array(Buffer.from(hex, 'hex')), curve);
  }
  const bytes = input as Uint8Array;
  if (bytes[0] === 0x30 && bytes.length > 65) {
    let key: KeyObject;
    try {
      key = createPublicKey({ key: Buffer.from(bytes), format: 'der', type: 'spki' });
    } catch (err) {
      throw new TypeError(`server public key DER could not be read: ${(err as Error).message}`, { cause: err });
    }
    return publicFromKeyObject(key, curve);
  }
  const info = curveInfo(curve);
  let point: Uint8Array;
  if (bytes.length === 2 * info.size) {
    point = new Uint8Array(1 + 2 * info.size);
    point[0] = 0x04;
    point.set(bytes, 1);
  } else if (bytes.length === 1 + 2 * info.size && bytes[0] === 0x04) {
    point = new Uint8Array(bytes);
  } else if (bytes.length === 1 + info.size && (bytes[0] === 0x02 || bytes[0] === 0x03)) {
    try {
      point = new Uint8Array(ECDH.convertKey(bytes, info.name, undefined, undefined, 'uncompressed') as Buffer);
    } catch (err) {
      throw new TypeError(`compressed public key is not a point on ${info.name}: ${(err as Error).message}`, { cause: err });
    }
  } else {
    throw new TypeError(
      `server public key of ${bytes.length} bytes: expected ${2 * info.size} (X‖Y), ${1 + 2 * info.size} (0x04‖X‖Y), ${1 + info.size} (compressed), PEM or DER`,
    );
  }
  return { curve: info.name, uncompressed: point };
}

function publicFromKeyObject(key: KeyObject, curve: string | undefined): { curve: 'secp256k1' | 'prime256v1'; uncompressed: Uint8Array } {
  const info = checkSameCurve(curve, curveOfKeyObject(key), 'the public key');
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw new TypeError('public key has no EC point');
  const point = new Uint8Array(1 + 2 * info.size);
  point[0] = 0x04;
  point.set(leftPad(fromBase64Url(jwk.x), info.size), 1);
  point.set(leftPad(fromBase64Url(jwk.y), info.size), 1 + info.size);
  return { curve: info.name, uncompressed: point };
}

// ---------------------------------------------------------------------------------------------
// Key derivation

/**
 * `*key` rejected: bad `bits`, wrong public key length, a point not on the curve, … The reference
 * closes the connection without answering (spec/fpnn.md §6 step 6); so is this a protocol error.
 */
export class KeyExchangeError extends FpnnProtocolError {}

/** `iv = MD5(secret)`; `key` = first 16 bytes of the secret (128) or the secret / SHA-256(secret) (256). */
export function deriveKeyMaterial(secret: Uint8Array, bits: KeyBits): { key: Uint8Array; iv: Uint8Array } {
  const iv = new Uint8Array(createHash('md5').update(secret).digest());
  let key: Uint8Array;
  if (bits === 128) key = secret.slice(0, 16);
  else if (bits === 256) key = secret.length === 32 ? secret.slice() : new Uint8Array(createHash('sha256').update(secret).digest());
  else throw new KeyExchangeError(`bits must be 128 or 256, got ${String(bits)}`);
  if (key.length !== bits / 8) throw new KeyExchangeError(`ECDH secret of ${secret.length} bytes is too short for ${bits}-bit AES`);
  return { key, iv };
}

/** The negotiated parameters of one encrypted connection. */
export class SessionKeys {
  constructor(
    readonly curve: 'secp256k1' | 'prime256v1',
    readonly bits: KeyBits,
    readonly streamMode: boolean,
    /** AES key: 16 bytes (128) or 32 bytes (256). */
    readonly key: Uint8Array,
    /** CFB initialisation vector: MD5 of the ECDH secret. */
    readonly iv: Uint8Array,
  ) {}

  /** A fresh cipher pair for the connection (package or stream mode as negotiated). Create one per connection. */
  createCipher(options: CipherOptions = {}): FrameCipher {
    return createFrameCipher(this, options);
  }
}

/** The `*key` quest payload as decoded (spec/fpnn.md §6); values are checked, not trusted. */
export interface KeyQuestPayload {
  /** Client ephemeral public key X‖Y: bin (str accepted). */
  readonly publicKey?: unknown;
  /** bool (0/1 accepted); nil/absent = false (package mode). */
  readonly streamMode?: unknown;
  /** 128 or 256; nil/absent = 128. */
  readonly bits?: unknown;
}

function readBits(value: unknown): KeyBits {
  if (value === undefined || value === null) return DEFAULT_KEY_BITS;
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (n === 128 || n === 256) return n;
  throw new KeyExchangeError(`*key: bits must be 128 or 256, got ${typeof value === 'object' ? 'a non-integer' : String(value)}`);
}

function readStreamMode(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (value === 0 || value === 1 || value === 0n || value === 1n) return value === 1 || value === 1n;
  throw new KeyExchangeError(`*key: streamMode must be a boolean, got ${typeof value}`);
}

function readPublicKeyBytes(value: unknown, size: number): Uint8Array {
  let bytes: Uint8Array | undefined;
  if (value instanceof Uint8Array) bytes = value;
  else if (typeof value === 'string') {
    // A str publicKey: its bytes are the UTF-8 of the string; a decoder that turned raw bytes into
    // latin-1 characters gives one char per byte instead.
    const asUtf8 = Buffer.from(value, 'utf8');
    bytes = asUtf8.length === 2 * size ? asUtf8 : Buffer.from(value, 'latin1');
  }
  if (!bytes)
    throw new KeyExchangeError(`*key: publicKey must be binary, got ${value === undefined || value === null ? 'nothing' : typeof value}`);
  if (bytes.length > 2 * size || bytes.length < 2 * size - MAX_DROPPED_ZEROS)
    throw new KeyExchangeError(`*key: publicKey must be ${2 * size} bytes (X‖Y), got ${bytes.length}`);
  return bytes;
}

/**
 * Decodes the `*key` quest payload for `serverKeyExchange`. `publicKey` may be msgpack bin or str:
 * the C++ FPNN client (fpnn core, fpnn-sdk-cpp) writes its `std::string` key as **str** holding
 * the 64 raw bytes. Decoded as text, those bytes (almost never valid UTF-8) would come back with
 * replacement characters and the key would be lost, so a str `publicKey` is read as its raw bytes.
 */
export function decodeKeyQuestPayload(flag: PayloadFlag, bytes: Uint8Array): Payload {
  const payload = decodePayload(flag, bytes);
  if (flag === Flag.MSGPACK && typeof payload.publicKey === 'string') {
    const raw = strBytesAt(bytes, 0, bytes.length, ['publicKey']);
    if (raw) payload.publicKey = new Uint8Array(raw);
  }
  return payload;
}

// ECDH objects for server keys, so a connection costs one scalar multiplication, not two.
const ecdhCache = new WeakMap<Uint8Array, ECDH>();

/**
 * The leading zero bytes a public key may lack. The Java FPNN SDK (`KeyGenerator.gen`) writes each
 * coordinate with `BigInteger.toByteArray()`, which drops them: about one key in 128 comes 63
 * bytes long, one in 32,768 62. Refused (spec/fpnn.md §6 step 1), the SDK's connect waits for ever.
 */
const MAX_DROPPED_ZEROS = 2;

/**
 * The ECDH secret with the peer's X‖Y. A key short of 2 × `size` bytes (MAX_DROPPED_ZEROS) is read
 * as the one split of its bytes into two left-padded coordinates that is a point of the curve: a
 * wrong split is no point (the odds of one being one are about 2^-256).
 */
function peerSecret(ecdh: ECDH, peer: Uint8Array, size: number): Uint8Array {
  if (peer.length === 2 * size) return computeSecret(ecdh, peer);
  const secrets: Uint8Array[] = [];
  for (let xLength = peer.length - size; xLength <= size; xLength++) {
    const full = new Uint8Array(2 * size);
    full.set(peer.subarray(0, xLength), size - xLength);
    full.set(peer.subarray(xLength), 2 * size - (peer.length - xLength));
    try {
      secrets.push(computeSecret(ecdh, full));
    } catch {
      // not a point: not this split
    }
  }
  if (secrets.length !== 1)
    throw new KeyExchangeError(`*key: publicKey of ${peer.length} bytes is no point however its coordinates are padded to ${size} bytes`);
  return secrets[0]!;
}

function computeSecret(ecdh: ECDH, peerRaw: Uint8Array): Uint8Array {
  const point = new Uint8Array(1 + peerRaw.length);
  point[0] = 0x04;
  point.set(peerRaw, 1);
  try {
    return new Uint8Array(ecdh.computeSecret(point));
  } catch (err) {
    throw new KeyExchangeError(`*key: publicKey is not a valid point: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The server's half of `*key` (spec/fpnn.md §6 steps 1–4): checks `bits` and the public key length,
 * computes the ECDH secret (X coordinate) and derives key and IV. Throws `KeyExchangeError` (an
 * `FpnnProtocolError`) on any invalid input: close the connection without answering.
 * @param server the parsed key from `parseServerPrivateKey` (raw bytes/hex/PEM are parsed on each call)
 */
export function serverKeyExchange(
  server: ServerKey | { privateKey: PrivateKeyInput; curve?: CurveName },
  quest: KeyQuestPayload,
): SessionKeys {
  const key = toServerKey(server);
  const info = curveInfo(key.curve);
  const bits = readBits(quest.bits);
  const streamMode = readStreamMode(quest.streamMode);
  const peer = readPublicKeyBytes(quest.publicKey, info.size);
  let ecdh = ecdhCache.get(key.privateKey);
  if (!ecdh) {
    ecdh = validatePrivateScalar(key.privateKey, info);
    ecdhCache.set(key.privateKey, ecdh);
  }
  const secret = peerSecret(ecdh, peer, info.size);
  const { key: aesKey, iv } = deriveKeyMaterial(secret, bits);
  return new SessionKeys(info.name, bits, streamMode, aesKey, iv);
}

export interface ClientKeyExchangeOptions {
  /** @default 'secp256k1' (or the curve of a PEM/DER server key) */
  curve?: CurveName;
  /** AES key size. @default 128 */
  bits?: KeyBits;
  /** true = stream mode, false = package mode. @default false */
  streamMode?: boolean;
  /** Largest encrypted package accepted from the server (package mode). @default DEFAULT_MAX_FRAME_BYTES (8 MiB) */
  maxFrameBytes?: number;
}

export interface ClientKeyExchange {
  /** Send as the first quest, `*key`, twoway, in plaintext. `publicKey` encodes as msgpack bin. */
  readonly questPayload: { publicKey: Uint8Array; streamMode: boolean; bits: KeyBits };
  readonly keys: SessionKeys;
  /** This connection's cipher: encrypt every frame written after `*key`, decrypt everything read after it. */
  readonly ciphers: FrameCipher;
}

/** The client's half of `*key`: an ephemeral key pair, the shared secret and the connection cipher. */
export function clientKeyExchange(serverPublicKey: string | Uint8Array, options: ClientKeyExchangeOptions = {}): ClientKeyExchange {
  const bits = options.bits ?? DEFAULT_KEY_BITS;
  if (bits !== 128 && bits !== 256) throw new TypeError(`bits must be 128 or 256, got ${String(bits)}`);
  const streamMode = options.streamMode ?? false;
  const server = parsePublicKey(serverPublicKey, options.curve);
  const info = curveInfo(server.curve);
  const ecdh = createECDH(info.name);
  ecdh.generateKeys();
  let secret: Uint8Array;
  try {
    secret = new Uint8Array(ecdh.computeSecret(server.uncompressed));
  } catch (err) {
    throw new TypeError(`server public key is not a valid ${info.name} point: ${(err as Error).message}`, { cause: err });
  }
  const { key, iv } = deriveKeyMaterial(secret, bits);
  const keys = new SessionKeys(info.name, bits, streamMode, key, iv);
  const publicKey = new Uint8Array(ecdh.getPublicKey(null, 'uncompressed')).subarray(1);
  const cipherOptions: CipherOptions = options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes };
  return { questPayload: { publicKey, streamMode, bits }, keys, ciphers: keys.createCipher(cipherOptions) };
}

// ---------------------------------------------------------------------------------------------
// Ciphers

export interface CipherOptions {
  /** Largest encrypted package accepted (package mode; checked from the 4-byte length). @default DEFAULT_MAX_FRAME_BYTES (8 MiB) */
  maxFrameBytes?: number;
}

/**
 * Both directions of one encrypted connection, the same for client and server (both directions use
 * the same key and IV; each has its own cipher state).
 */
export interface FrameCipher {
  readonly mode: 'package' | 'stream';
  /** Encrypts one whole outgoing frame; returns the bytes to write. Call in write order. */
  encrypt(frame: Uint8Array): Uint8Array;
  /**
   * Decrypts received bytes (split or coalesced arbitrarily) and returns plaintext for
   * `FrameDecoder.push`: in package mode one element per completed package (one frame each), in
   * stream mode the decrypted bytes. Throws `FpnnProtocolError` on an oversize or undersize package;
   * the cipher is then unusable (close the connection).
   */
  decrypt(chunk: Uint8Array): Uint8Array[];
  /** Received bytes (length prefix included) of a package not yet complete (package mode; always 0 in stream mode). */
  readonly bufferedBytes: number;
  /**
   * Sets the largest package accepted from now on (package mode: a server lowers it before a
   * login, as its frame decoder's). Stream mode has nothing to check: the decoder sees each header.
   */
  limitFrameBytes(max: number): void;
}

function algorithm(key: Uint8Array): string {
  if (key.length === 16) return 'aes-128-cfb';
  if (key.length === 32) return 'aes-256-cfb';
  throw new TypeError(`AES key must be 16 or 32 bytes, got ${key.length}`);
}

function checkIv(iv: Uint8Array): void {
  if (iv.length !== 16) throw new TypeError(`CFB IV must be 16 bytes, got ${iv.length}`);
}

/**
 * Package mode (`streamMode` false): every frame is encrypted with a fresh AES-CFB cipher from the
 * same key and IV and sent as `uint32 LE length ‖ ciphertext` (spec/fpnn.md §6 "Package mode").
 */
export class PackageCipher implements FrameCipher {
  readonly mode = 'package' as const;
  maxFrameBytes: number;
  private readonly algorithm: string;
  // Receive state: the 4-byte length (maybe split), then the body decrypted as it arrives.
  private readonly lengthBytes = new Uint8Array(4);
  private lengthHave = 0;
  private bodyNeed = 0;
  private bodyHave = 0;
  private decipher: Decipher | undefined;
  private parts: Uint8Array[] = [];
  private failed = false;

  constructor(
    private readonly key: Uint8Array,
    private readonly iv: Uint8Array,
    options: CipherOptions = {},
  ) {
    this.algorithm = algorithm(key);
    checkIv(iv);
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  get bufferedBytes(): number {
    // The length prefix counts until its package is whole: a peer that sent only a prefix holds a
    // package open (the server's idle timeout looks at this).
    return this.decipher ? 4 + this.bodyHave : this.lengthHave;
  }

  encrypt(frame: Uint8Array): Uint8Array {
    const cipher = createCipheriv(this.algorithm, this.key, this.iv);
    const out = Buffer.allocUnsafe(4 + frame.length);
    out.writeUInt32LE(frame.length, 0);
    const body = cipher.update(frame);
    body.copy(out, 4);
    return out;
  }

  decrypt(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw new FpnnProtocolError('package decryptor already failed');
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (!this.decipher) {
        // Reading the length prefix.
        if (this.lengthHave === 0 && chunk.length - at >= 4) {
          this.startBody(readU32(chunk, at));
          at += 4;
        } else {
          this.lengthBytes[this.lengthHave++] = chunk[at++]!;
          if (this.lengthHave === 4) {
            this.lengthHave = 0;
            this.startBody(readU32(this.lengthBytes, 0));
          }
        }
        continue;
      }
      const take = Math.min(this.bodyNeed - this.bodyHave, chunk.length - at);
      const plain = this.decipher.update(chunk.subarray(at, at + take));
      at += take;
      this.bodyHave += take;
      if (this.bodyHave === this.bodyNeed) {
        out.push(this.parts.length === 0 ? plain : concat([...this.parts, plain], this.bodyNeed));
        this.parts = [];
        this.decipher = undefined;
        this.bodyHave = 0;
        this.bodyNeed = 0;
      } else {
        this.parts.push(plain);
      }
    }
    return out;
  }

  limitFrameBytes(max: number): void {
    this.maxFrameBytes = max;
  }

  private startBody(length: number): void {
    if (length > this.maxFrameBytes || length < HEADER_BYTES) {
      this.failed = true;
      this.parts = [];
      throw new FpnnProtocolError(
        length < HEADER_BYTES
          ? `encrypted package of ${length} bytes cannot hold a frame`
          : `encrypted package of ${length} bytes exceeds the ${this.maxFrameBytes}-byte limit`,
      );
    }
    this.bodyNeed = length;
    this.bodyHave = 0;
    this.decipher = createDecipheriv(this.algorithm, this.key, this.iv);
  }
}

/**
 * Stream mode (`streamMode` true): one AES-CFB cipher per direction, created once from key and IV,
 * its state continuing across frames for the connection's life; no length prefix
 * (spec/fpnn.md §6 "Stream mode"). The decrypted bytes go to the ordinary `FrameDecoder`, which
 * enforces the frame size limit.
 */
export class StreamCipher implements FrameCipher {
  readonly mode = 'stream' as const;
  readonly bufferedBytes = 0;
  private readonly cipher: Cipher;
  private readonly decipher: Decipher;

  constructor(key: Uint8Array, iv: Uint8Array) {
    const alg = algorithm(key);
    checkIv(iv);
    this.cipher = createCipheriv(alg, key, iv);
    this.decipher = createDecipheriv(alg, key, iv);
  }

  encrypt(frame: Uint8Array): Uint8Array {
    return this.cipher.update(frame);
  }

  decrypt(chunk: Uint8Array): Uint8Array[] {
    return chunk.length === 0 ? [] : [this.decipher.update(chunk)];
  }

  limitFrameBytes(): void {}
}

/** The cipher for negotiated key material: `PackageCipher` or `StreamCipher`. */
export function createFrameCipher(
  material: { readonly key: Uint8Array; readonly iv: Uint8Array; readonly streamMode: boolean },
  options: CipherOptions = {},
): FrameCipher {
  return material.streamMode ? new StreamCipher(material.key, material.iv) : new PackageCipher(material.key, material.iv, options);
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
