/**
 * Golden frames captured from the official SDKs (spec/vectors/frames.json, frames.md, answers.json),
 * from the repository's copy in `fixtures/spec-vectors`. The spec itself lives beside the
 * repository (../shared/spec from its root) and is the source of truth: when it is there, the copy
 * must be identical to it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  decodePayload,
  encodeAnswer,
  encodeAnswerFrame,
  encodePayload,
  encodeQuestFrame,
  Flag,
  FrameDecoder,
  json,
  type Frame,
  type Payload,
} from '@rtm/fpnn';

const vectorsDir = new URL('../../../fixtures/spec-vectors/', import.meta.url);
const sharedVectorsDir = new URL('../../../../shared/spec/vectors/', import.meta.url);
const VECTOR_FILES = ['frames.json', 'frames.md', 'answers.json'] as const;
const framesPath = fileURLToPath(new URL('frames.json', vectorsDir));
const framesMdPath = fileURLToPath(new URL('frames.md', vectorsDir));
const answersPath = fileURLToPath(new URL('answers.json', vectorsDir));

describe('the repository copy of the spec vectors', () => {
  const shared = fileURLToPath(sharedVectorsDir);
  it(
    "is identical to ../shared/spec/vectors (copy the spec's files to fixtures/spec-vectors when it changes)",
    { skip: existsSync(shared) ? false : `the shared spec is not beside the repository (${shared}); the copy is used as is` },
    () => {
      for (const name of VECTOR_FILES) {
        const ours = readFileSync(new URL(name, vectorsDir));
        const theirs = readFileSync(new URL(name, sharedVectorsDir));
        assert.ok(ours.equals(theirs), `fixtures/spec-vectors/${name} differs from the shared spec's`);
      }
    },
  );
});

interface GoldenFrame {
  sdk: string;
  transport: string;
  method: string;
  mtype: number;
  pid: number;
  secret: string;
  note: string;
  hex: string;
}

interface GoldenAnswer {
  accepted_by: string;
  kind: string;
  method: string;
  hex: string;
  header: { version: number; flag: number; mtype: number; ss: number; psize: number; seq: number };
  decoded: Payload;
}

const load = <T>(path: string): T => json.parse(readFileSync(path, 'utf8')) as T;

function decodeOne(hexText: string): { frame: Frame; payload: Payload; bytes: Uint8Array } {
  const bytes = new Uint8Array(Buffer.from(hexText, 'hex'));
  const frames = new FrameDecoder().push(bytes);
  assert.equal(frames.length, 1);
  const frame = frames[0]!;
  return { frame, payload: decodePayload(frame.flag, frame.payload), bytes };
}

/** sign = UPPER(md5("pid:secret:salt:method:ts")), salt as its exact decimal text (server-api.md). */
function sign(pid: unknown, secret: string, salt: unknown, method: string, ts: unknown): string {
  const dec = (v: unknown): string => {
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
    throw new Error(`not an exact integer: ${String(v)}`);
  };
  return createHash('md5')
    .update(`${dec(pid)}:${secret}:${dec(salt)}:${method}:${dec(ts)}`)
    .digest('hex')
    .toUpperCase();
}

/** frames.md rows: `| key \`fixstr\` | bytes | msgpack type | value |`, grouped by frames.json index. */
function parseFramesMd(text: string): Map<number, Array<{ key: string; type: string; value: string }>> {
  const byIndex = new Map<number, Array<{ key: string; type: string; value: string }>>();
  let index: number | undefined;
  let inAnswersSection = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('## answers.json')) inAnswersSection = true;
    if (inAnswersSection) continue;
    const at = /\(frames\.json index (\d+),/.exec(line);
    if (at) {
      index = Number(at[1]);
      byIndex.set(index, []);
      continue;
    }
    const row = /^\| (\S+) `fixstr` \| [^|]+ \| ([^|]+) \| (.*) \|$/.exec(line);
    if (row && index !== undefined) byIndex.get(index)!.push({ key: row[1]!, type: row[2]!.trim(), value: row[3]!.trim() });
  }
  return byIndex;
}

/** Checks a decoded value against frames.md's msgpack type and value columns. */
function checkTyped(where: string, value: unknown, type: string, text: string): void {
  if (type === 'uint64' || type === 'int64') {
    // 64-bit forms must decode as bigint (never a JS number), whatever the magnitude.
    assert.equal(typeof value, 'bigint', `${where}: ${type} must decode as bigint`);
    assert.equal(value, BigInt(text), where);
  } else if (/^(u?int(8|16|32)|positive fixint|negative fixint)$/.test(type)) {
    assert.equal(typeof value, 'number', where);
    assert.equal(value, Number(text), where);
  } else if (type === 'float64' || type === 'float32') {
    // msgpack-lite writes JS numbers beyond int32 as float64; they are integral.
    assert.equal(typeof value, 'number', where);
    assert.ok(Number.isInteger(value), `${where}: float64 ${String(value)} must be integral`);
    const exact = /\(= (\d+)\)/.exec(text)?.[1];
    if (exact) assert.equal(value, Number(exact), where);
  } else if (type === 'true' || type === 'false') {
    assert.equal(value, type === 'true', where);
  } else if (/^(fixstr|str8|str16)$/.test(type)) {
    assert.equal(typeof value, 'string', where);
    if (text.startsWith('"')) assert.equal(value, JSON.parse(text), where);
  } else if (type.startsWith('fixarray')) {
    assert.ok(Array.isArray(value), where);
    assert.deepEqual(
      (value as unknown[]).map((x) => String(x)),
      (JSON.parse(text) as unknown[]).map((x) => String(x)),
      where,
    );
    if (/int64/.test(type))
      assert.ok(
        (value as unknown[]).every((x) => typeof x === 'bigint'),
        `${where}: int64 items must be bigint`,
      );
  } else if (type.startsWith('bin')) {
    assert.ok(value instanceof Uint8Array, where);
  } else {
    assert.fail(`${where}: frames.md type '${type}' not understood by this test`);
  }
}

describe('golden frames from the official SDKs (spec/vectors)', () => {
  it('every frame in frames.json decodes, with the header fields frames.md describes', () => {
    const frames = load<GoldenFrame[]>(framesPath);
    assert.ok(frames.length >= 40);
    for (const [i, g] of frames.entries()) {
      const { frame, bytes } = decodeOne(g.hex);
      const where = `frames.json[${i}] ${g.sdk} ${g.method}`;
      assert.equal(bytes[4], g.sdk === 'python-server' ? 0 : 1, `${where}: version byte`);
      assert.equal(frame.flag, Flag.MSGPACK, where);
      if (g.mtype === 2) {
        assert.equal(frame.kind, 'answer', where);
        assert.equal(frame.kind === 'answer' && frame.ok, true, where);
        assert.equal(Buffer.from(frame.payload).toString('hex'), '80', `${where}: answers to pushes are an empty map`);
        // Our answer for the same seq differs only in the version byte for Python.
        const ours = encodeAnswer(frame.seq, encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK);
        ours[4] = bytes[4]!;
        assert.equal(Buffer.from(ours).toString('hex'), g.hex, where);
      } else {
        assert.equal(frame.kind, 'quest', where);
        assert.equal(frame.kind === 'quest' && frame.method, g.method, where);
        assert.equal(frame.kind === 'quest' && frame.oneway, false, where);
      }
    }
    // All of them in one stream, and byte by byte.
    const all = new Uint8Array(Buffer.concat(frames.map((g) => Buffer.from(g.hex, 'hex'))));
    assert.equal(new FrameDecoder().push(all).length, frames.length);
    const d = new FrameDecoder();
    let n = 0;
    for (const b of all) n += d.push(Uint8Array.of(b)).length;
    assert.equal(n, frames.length);
  });

  it('payload fields have the msgpack types and values frames.md lists (bigint for 64-bit, integral float64)', () => {
    const frames = load<GoldenFrame[]>(framesPath);
    const rows = parseFramesMd(readFileSync(framesMdPath, 'utf8'));
    let checked = 0;
    for (const [i, g] of frames.entries()) {
      const { payload } = decodeOne(g.hex);
      const expected = rows.get(i);
      assert.ok(expected, `frames.md has no section for index ${i}`);
      assert.deepEqual(
        Object.keys(payload),
        expected.map((r) => r.key),
        `frames.json[${i}] keys and their order`,
      );
      for (const row of expected) {
        checkTyped(`frames.json[${i}] ${g.method}.${row.key}`, payload[row.key], row.type, row.value);
        checked++;
      }
    }
    assert.ok(checked > 200, `checked ${checked} fields`);
  });

  it('notable cases: Python uint64 salt > 2^53, explicit mid 0x0123456789ABCDEF, Node float64 begin/end', () => {
    const frames = load<GoldenFrame[]>(framesPath);
    const python = decodeOne(frames[0]!.hex).payload;
    assert.equal(python.salt, 29414456923222016n);
    assert.ok((python.salt as bigint) > 2n ** 53n);
    const bigMid = frames.findIndex((g) => g.sdk === 'python-server' && g.note.includes('81985529216486895'));
    assert.equal(decodeOne(frames[bigMid]!.hex).payload.mid, 81985529216486895n);
    const nodeHistory = frames.find((g) => g.sdk === 'node-server' && g.method === 'getp2pmsg')!;
    const h = decodeOne(nodeHistory.hex).payload;
    assert.equal(typeof h.begin, 'number');
    assert.ok(Number.isInteger(h.begin) && (h.begin as number) > 2 ** 32);
    const web = frames.find((g) => g.sdk === 'web-client' && g.method === 'enterroom')!;
    assert.deepEqual(decodeOne(web.hex).payload, { rid: 3001n }); // Int64 → 0xd3 even for small ids
  });

  it('signed quests re-verify with UPPER(md5("pid:secret:salt:method:ts")) and the exact salt text', () => {
    const frames = load<GoldenFrame[]>(framesPath);
    let signed = 0;
    let negative = 0;
    for (const [i, g] of frames.entries()) {
      const { frame, payload } = decodeOne(g.hex);
      if (frame.kind !== 'quest' || payload.sign === undefined) continue;
      signed++;
      const where = `frames.json[${i}] ${g.sdk} ${g.method}`;
      // The sign is computed with the secret that SDK was configured with.
      assert.equal(sign(payload.pid, g.secret, payload.salt, frame.method, payload.ts), payload.sign, where);
      if (g.secret !== 'golden-secret') {
        negative++;
        assert.notEqual(
          sign(payload.pid, 'golden-secret', payload.salt, frame.method, payload.ts),
          payload.sign,
          `${where} must not verify`,
        );
      }
      // Reading a uint64 salt as a JS number would break the check (that is why it must be bigint).
      if (typeof payload.salt === 'bigint' && payload.salt > 2n ** 53n && payload.salt % 2n === 0n) {
        const lossy = String(Number(payload.salt));
        if (lossy !== payload.salt.toString()) {
          assert.notEqual(
            createHash('md5')
              .update(`${String(payload.pid)}:${g.secret}:${lossy}:${frame.method}:${String(payload.ts)}`)
              .digest('hex')
              .toUpperCase(),
            payload.sign,
          );
        }
      }
    }
    assert.ok(signed >= 25, `signed quests: ${signed}`);
    assert.equal(negative, 1);
  });

  it('server frames the SDKs accepted (answers.json) decode to their documented values', () => {
    const answers = load<GoldenAnswer[]>(answersPath);
    for (const [i, a] of answers.entries()) {
      const { frame, payload, bytes } = decodeOne(a.hex);
      const where = `answers.json[${i}] ${a.kind}`;
      assert.equal(bytes[4], a.header.version, where);
      assert.equal(frame.flag, a.header.flag, where);
      assert.equal(frame.seq, a.header.seq, where);
      assert.equal(frame.payload.length, a.header.psize, where);
      if (frame.kind === 'answer') assert.equal(frame.ok, a.header.ss === 0, where);
      else assert.equal(frame.method, a.method, where);
      assert.deepEqual(loose(payload), loose(a.decoded), where);
      if (frame.kind === 'answer' && !frame.ok) {
        assert.equal(typeof payload.code, 'number');
        assert.equal(typeof payload.ex, 'string');
      }
    }
  });

  it('server frames the SDKs accepted (answers.json) re-encode byte for byte from their decoded payload', () => {
    // Our encoder writes what the SDKs were shown to accept: header, key order, int widths, str/bin.
    const answers = load<GoldenAnswer[]>(answersPath);
    for (const [i, a] of answers.entries()) {
      const { frame, payload } = decodeOne(a.hex);
      const ours =
        frame.kind === 'answer'
          ? encodeAnswerFrame(frame.seq, payload, frame.flag, frame.ok)
          : encodeQuestFrame(frame.method, payload, frame.flag, frame.oneway, frame.seq);
      assert.equal(Buffer.from(ours).toString('hex'), a.hex, `answers.json[${i}] ${a.kind}`);
    }
  });
});

/** Integer width-insensitive form (answers.json's JSON has no int64/number distinction). */
function loose(value: unknown): unknown {
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))) return `int:${value}`;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (Array.isArray(value)) return value.map(loose);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, loose(v)]));
  return value;
}
