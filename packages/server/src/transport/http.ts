import type { IncomingMessage, ServerResponse } from 'node:http';
import { FpnnErrorCode, json, RtmError, type Payload } from '@rtm/fpnn';

/** Answers one FPNN-over-HTTP call: `{ ok: true, payload }` or an error answer `{ code, ex }`. */
export type HttpQuestHandler = (method: string, payload: Payload, remote: string) => Promise<{ ok: boolean; payload: Payload }>;

const MAX_BODY_BYTES = 1024 * 1024;

function corsHeaders(req: IncomingMessage): Record<string, string> {
  if (!req.headers.origin) return {};
  return {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Credentials': 'true',
    'Access-Control-Allow-Methods': 'GET, POST',
    'Access-Control-Allow-Headers': 'Content-Type',
  };
}

function reply(req: IncomingMessage, res: ServerResponse, status: number, body: Payload): void {
  const text = json.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    Connection: 'Keep-Alive',
    ...corsHeaders(req),
  });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new RtmError(FpnnErrorCode.CORE_HTTP_ERROR, `request body exceeds ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * The FPNN HTTP bridge (spec/fpnn.md §7): `POST /service/<method>` with a JSON object body, or
 * `GET /service/<method>?fpnn=<url-encoded JSON>`. Success → 200 with the answer map; error →
 * 500 with `{code, ex}`. CORS headers when the request has an Origin.
 */
export async function serveHttpQuest(
  req: IncomingMessage,
  res: ServerResponse,
  handle: HttpQuestHandler,
  maxBodyBytes = MAX_BODY_BYTES,
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
  const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
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
    if (!res.headersSent) reply(req, res, 500, e.toAnswer());
  }
}
