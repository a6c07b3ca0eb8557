/**
 * The part of the WebSocket API the SDK uses: the browser's `WebSocket` and the `ws` package
 * (Node) both provide it. The SDK sets `binaryType = 'arraybuffer'`.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Creates a WebSocket for `url` (connecting starts at once, as with `new WebSocket(url)`). */
export type WebSocketFactory = (url: string) => WebSocketLike | Promise<WebSocketLike>;

type WebSocketConstructor = new (url: string) => WebSocketLike;

let nodeWebSocket: Promise<WebSocketConstructor> | undefined;

/**
 * The global `WebSocket` when there is one (browsers, Node ≥ 22), else the `ws` package. `ws` is
 * loaded with a dynamic import so that browser bundles never contain it (mark it external).
 */
export const defaultWebSocketFactory: WebSocketFactory = async (url) => {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return new global(url);
  nodeWebSocket ??= import('ws').then((mod) => (mod.WebSocket ?? mod.default) as unknown as WebSocketConstructor);
  const Ctor = await nodeWebSocket;
  return new Ctor(url);
};

const utf8 = new TextEncoder();

/** The bytes of one received WebSocket message, whatever form the implementation delivers. */
export function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return utf8.encode(data); // text opcode: same bytes (fpnn.md §5)
  if (Array.isArray(data)) {
    // ws with binaryType 'fragments' / 'nodebuffer' may hand over a list of chunks.
    const parts = data.map(messageBytes).filter((p): p is Uint8Array => p !== undefined);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return undefined;
}
