import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodePayload, FrameDecoder } from '@rtm/fpnn';
import { signQuest } from '../src/index.js';
import { IdGenerator } from '../src/signature.js';
import { vectorsDir } from './fake-server.js';

test('signQuest is UPPER(hex(md5("pid:secret:salt:method:ts"))) with exact bigint text', () => {
  const big = 2n ** 62n + 12345n; // 4611686018427400249: not representable as a JS number
  const viaText = signQuest(11000001, 'golden-secret', big, 'sendmsg', 1795315914);
  // md5 of "11000001:golden-secret:4611686018427400249:sendmsg:1795315914", computed with Python's hashlib.
  assert.equal(viaText, '63D9FBE30CA547CDDEBF55E54BDE14CC');
  assert.match(viaText, /^[0-9A-F]{32}$/);
  assert.notEqual(viaText, signQuest(11000001, 'golden-secret', Number(big), 'sendmsg', 1795315914), 'a float salt must not sign the same');
});

const framesUrl = new URL('frames.json', vectorsDir());
const framesPath = fileURLToPath(framesUrl);

interface Vector {
  sdk: string;
  method: string;
  mtype: number;
  note: string;
  pid: number;
  secret: string;
  hex: string;
}

test('signQuest verifies every signed quest captured from the Python and Node SDKs (spec/vectors/frames.json)', () => {
  const vectors = JSON.parse(readFileSync(framesPath, 'utf8')) as Vector[];
  let checked = 0;
  for (const v of vectors) {
    if (v.mtype !== 1 || v.sdk === 'web-client') continue; // answers and client-gate quests carry no sign
    const frames = new FrameDecoder().push(Buffer.from(v.hex, 'hex'));
    assert.equal(frames.length, 1);
    const frame = frames[0]!;
    assert.equal(frame.kind, 'quest');
    if (frame.kind !== 'quest') continue;
    const p = decodePayload(frame.flag, frame.payload);
    assert.equal(typeof p.salt, 'bigint', `${v.sdk} ${v.method}: salt must decode as bigint`);
    const expected = signQuest(p.pid as number, v.secret, p.salt as bigint, frame.method, p.ts as number);
    assert.equal(p.sign, expected, `${v.sdk} ${v.method}: ${v.note}`);
    if (v.note.startsWith('NEGATIVE')) {
      assert.notEqual(p.sign, signQuest(p.pid as number, 'golden-secret', p.salt as bigint, frame.method, p.ts as number));
    }
    checked++;
  }
  assert.ok(checked >= 25, `only ${checked} signed vectors found`);
});

test('IdGenerator: unique, increasing, above 2^53, below 2^63, even within one millisecond or when the clock steps back', () => {
  let now = 1_795_315_914_246;
  const gen = new IdGenerator(() => now);
  const seen = new Set<bigint>();
  let last = 0n;
  for (let i = 0; i < 5000; i++) {
    if (i === 2500) now -= 10_000; // clock steps back
    const id = gen.next();
    assert.ok(id > last);
    assert.ok(id > 2n ** 53n && id < 2n ** 63n);
    seen.add(id);
    last = id;
  }
  assert.equal(seen.size, 5000);
});

test("IdGenerator: two generators' ids in the same millisecond differ (a random offset each)", () => {
  const firsts = new Set(Array.from({ length: 20 }, () => new IdGenerator(() => 1_795_315_914_246).next()));
  assert.ok(firsts.size > 1, 'twenty generators began at the same id');
  for (const id of firsts) assert.ok(id >> 20n === 1_795_315_914_246n, 'the offset stays inside the millisecond');
});
