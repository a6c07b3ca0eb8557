/**
 * A transport only moves bytes (STYLE.md 3): whole FPNN frames out, raw bytes in.
 * One implementation per socket kind: tcp.ts, websocket.ts (HTTP is request/response: http.ts).
 */
export type TransportKind = 'tcp' | 'websocket';

/** Implemented by the owner of a transport (methods, so no closure is made per connection). */
export interface TransportEvents {
  /** Bytes received (TCP: a stream chunk; WebSocket: one binary message). */
  onTransportData(chunk: Uint8Array): void;
  /**
   * The transport answered the peer itself (a WebSocket pong, written by ws): its outbound bound
   * is the owner's to check, as for the frames it writes.
   */
  onTransportReplied?(): void;
  /** The socket closed, for whatever reason; called once. */
  onTransportClose(): void;
}

export interface Transport {
  readonly kind: TransportKind;
  /** Whether it runs inside TLS (the client gate's TLS port). */
  readonly tls: boolean;
  /** "ip:port" of the peer. */
  readonly remote: string;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  readonly bufferedBytes: number;
  /**
   * Whether bytes of an unfinished transport unit are held (a WebSocket frame or fragmented
   * message not yet whole): the idle timeout treats them as a frame started. TCP: always false,
   * its partial frames are the FPNN decoder's.
   */
  readonly receiving: boolean;
  /**
   * The largest transport unit accepted from now on: a WebSocket message, whole or in fragments
   * (a larger one closes the connection, 1009, as it arrives). TCP: nothing to do, its frames are
   * the FPNN decoder's to bound.
   */
  limitMessageBytes(bytes: number): void;
  /** Starts delivering events; called once by the connection that owns the transport. */
  start(events: TransportEvents): void;
  /** Writes one whole frame (or, once encrypted, one ciphertext unit). */
  write(bytes: Uint8Array): void;
  /**
   * Writes an encoded twoway quest with its seq (bytes 12..15) replaced: a push encoded once and
   * written to many connections costs one copy per connection. Returns the bytes queued.
   */
  writeWithSeq(template: Uint8Array, seq: number): number;
  /** Closes the socket; pending writes are flushed when possible. Idempotent. */
  close(): void;
}

/** The address of a peer's "address:port" (`remote`; IPv6 without brackets, as node writes it). */
export const withoutPort = (remote: string): string => remote.slice(0, remote.lastIndexOf(':'));

/** The `transport` label of the metrics and the log: `tcp`, `websocket`, or either with `+tls`. */
export const transportLabel = (t: Pick<Transport, 'kind' | 'tls'>): string => (t.tls ? `${t.kind}+tls` : t.kind);
