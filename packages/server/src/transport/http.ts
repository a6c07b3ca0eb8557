import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_MAX_FRAME_BYTES, FpnnErrorCode, json, RtmError, type Payload } from '@rtm/fpnn';

const utf8 = new TextDecoder();

/** Answers one FPNN-over-HTTP call: `{ ok: true, payload }` or an error answer `{ code, ex }`. */
export type HttpQuestHandler = (method: string, payload: Payload, remote: string) => Promise<{ ok: boolean; payload: Payload }>;

function corsHeaders(req: IncomingMessage): Record<string, string> {
  if (!req.headers.origin) return {};
  return {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Credentials': 'true',
    'Access-Control-Allow-Methods': 'GET, POST',
    'Access-Control-Allow-Headers': 'Content-Type',
  };
}

/**
 * `close`: the connection ends once the answer is written (the request's body was not all read).
 * It ends too when the request asked for it (`Connection: close`, HTTP/1.0 without keep-alive):
 * node's server does not take another request on it, so an answer saying `Keep-Alive` made a
 * client's pool reuse the socket and its next request fail ("socket hang up").
 */
function reply(req: IncomingMessage, res: ServerResponse, status: number, body: Payload, close = false): void {
  const text = json.stringify(body);
  const closing = close || !res.shouldKeepAlive;
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    Connection: closing ? 'close' : 'Keep-Alive',
    ...corsHeaders(req),
  });
  res.end(text);
}

/** Whether a request comes with a body (chunked, or a Content-Length above 0). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** What a port that serves no HTTP calls answers every one of them (500 with `{code, ex}`). */
export interface HttpRefusal {
  readonly refusal: Payload;
}

/** A body over the limit: answered 413 with `{code, ex}`, then the connection is closed. */
class BodyTooLarge extends RtmError {
  constructor(limit: number) {
    super(FpnnErrorCode.CORE_HTTP_ERROR, `request body exceeds ${limit} bytes (the FPNN frame limit)`);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return reject(new BodyTooLarge(limit)); // refused from its header, nothing read
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        // Not `req.destroy()`: that would take the socket the answer is to be written on. The
        // rest of the body is left unread; the answer says `Connection: close`, so node closes
        // the socket once it is written.
        chunks.length = 0;
        req.off('data', onData);
        reject(new BodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    // As FPNN JSON frames are read (codec.ts): a leading UTF-8 BOM is dropped (RFC 8259 §8.1).
    req.on('end', () => resolve(utf8.decode(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

/**
 * The FPNN HTTP bridge (spec/fpnn.md §7): `POST /service/<method>` with a JSON object body, or
 * `GET /service/<method>?fpnn=<url-encoded JSON>`. Success → 200 with the answer map; error →
 * 500 with `{code, ex}`. CORS headers when the request has an Origin. What is refused before it
 * is a quest has an HTTP status of its own, with `{code: 20010, ex}` too: a bad URL 400, a wrong
 * path 404, a body over `maxBodyBytes` 413 (then the connection closes: its body is not read).
 * The body is a quest's payload, so its limit is the FPNN frame limit (`RTM_MAX_FRAME_BYTES`).
 * With an `HttpRefusal` for `handle` (the client gate), every call is answered that refusal,
 * before its body is read.
 */
export async function serveHttpQuest(
  req: IncomingMessage,
  res: ServerResponse,
  handle: HttpQuestHandler | HttpRefusal,
  /** The caller, "address:port": the socket's own unless a balancer's PROXY header named another. */
  remote: string,
  maxBodyBytes = DEFAULT_MAX_FRAME_BYTES,
): Promise<void> {
  // Anything a request can hold must come back as an answer: a throw here would be an unhandled
  // rejection, which ends the process (a bad percent-encoding, an absolute URL that URL() refuses).
  let url: URL;
  let parts: string[];
  let method: string;
  try {
    url = new URL(req.url ?? '/', 'http://localhost');
    parts = url.pathname.split('/').filter(Boolean);
    method = parts.length === 2 ? decodeURIComponent(parts[1]!) : '';
  } catch {
    reply(req, res, 400, { code: FpnnErrorCode.CORE_HTTP_ERROR, ex: 'bad request URL' });
    return;
  }
  if (req.method === 'OPTIONS') {
    res.writeHead(204, { ...corsHeaders(req), 'Access-Control-Max-Age': '600' });
    res.end();
    return;
  }
  if (parts.length !== 2 || parts[0] !== 'service' || (req.method !== 'POST' && req.method !== 'GET')) {
    reply(req, res, 404, { code: FpnnErrorCode.CORE_HTTP_ERROR, ex: 'not found: use POST /service/<method> with a JSON body' });
    return;
  }
  if (typeof handle !== 'function') {
    // Whatever the call, the answer is known: its body is not read (nor buffered), and the
    // connection closes after the answer when there is one.
    reply(req, res, 500, handle.refusal, hasBody(req));
    return;
  }
  try {
    const text = req.method === 'GET' ? (url.searchParams.get('fpnn') ?? '{}') : await readBody(req, maxBodyBytes);
    let payload: unknown;
    try {
      payload = text.trim() === '' ? {} : json.parse(text);
    } catch (err) {
      throw new RtmError(FpnnErrorCode.PROTO_JSON_CONVERT, `body is not valid JSON: ${(err as Error).message}`);
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new RtmError(FpnnErrorCode.PROTO_INVALID_PACKAGE, 'body must be a JSON object');
    }
    const answer = await handle(method, payload as Payload, remote);
    reply(req, res, answer.ok ? 200 : 500, answer.payload);
  } catch (err) {
    const e = err instanceof RtmError ? err : new RtmError(FpnnErrorCode.CORE_UNKNOWN_ERROR, 'internal server error');
    if (res.headersSent) return;
    if (e instanceof BodyTooLarge) reply(req, res, 413, e.toAnswer(), true);
    else reply(req, res, 500, e.toAnswer());
  }
}
