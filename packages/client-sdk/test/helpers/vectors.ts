/**
 * The golden frames captured from the official SDKs (spec/vectors, see frames.md), from the
 * repository's copy in `fixtures/spec-vectors` (packages/fpnn/test/vectors.test.ts checks it against
 * the shared spec when that is beside the repository).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface FrameVector {
  sdk: string;
  direction: string;
  method: string;
  mtype: number;
  note: string;
  hex: string;
}

export interface AnswerVector extends FrameVector {
  accepted_by: string;
  kind: string;
  decoded: unknown;
}

const REPO_ROOT = new URL('../../../../', import.meta.url);
export const VECTORS_DIR = fileURLToPath(new URL('fixtures/spec-vectors/', REPO_ROOT));

function load<T>(name: string): T[] {
  return JSON.parse(readFileSync(`${VECTORS_DIR}${name}`, 'utf8')) as T[];
}

export const frames = load<FrameVector>('frames.json');
export const answers = load<AnswerVector>('answers.json');

export function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** The browser SDK's frame for `method` (client → server quest, or its answer to a push when mtype is 2). */
export function webClientFrame(method: string, mtype = 1): Uint8Array {
  const v = frames.find((f) => f.sdk === 'web-client' && f.method === method && f.mtype === mtype);
  if (!v) throw new Error(`no web-client frame for ${method}`);
  return hexBytes(v.hex);
}

/** A server frame the browser SDK accepted (answer or push) for `method`; `nth` picks among several. */
export function webClientAccepted(method: string, nth = 0): Uint8Array {
  const list = answers.filter((a) => a.accepted_by === 'web-client' && a.method === method);
  const v = list[nth];
  if (!v) throw new Error(`no web-client answer vector #${nth} for ${method}`);
  return hexBytes(v.hex);
}

/** Frames equal except the seq field (bytes 12..15), which depends on the call order. */
export function sameFrameIgnoringSeq(actual: Uint8Array, expected: Uint8Array): boolean {
  if (actual.length !== expected.length) return false;
  for (let i = 0; i < actual.length; i++) {
    if (i >= 12 && i < 16) continue;
    if (actual[i] !== expected[i]) return false;
  }
  return true;
}

/** Rewrites the seq of a frame (answers must carry the seq of the quest they answer). */
export function withSeq(frame: Uint8Array, seq: number): Uint8Array {
  const out = frame.slice();
  new DataView(out.buffer).setUint32(12, seq, true);
  return out;
}
