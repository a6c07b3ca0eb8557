import { FpnnErrorCode } from './codes.js';

/**
 * An error that becomes an FPNN error answer `{ code, ex }` (status byte 1).
 * Thrown by handlers on the server, and by the SDKs when the server answers with an error.
 */
export class RtmError extends Error {
  override readonly name = 'RtmError';
  constructor(
    readonly code: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The answer payload for this error. `ex` is always present: SDKs need both keys. */
  toAnswer(): { code: number; ex: string } {
    return { code: this.code, ex: this.message };
  }
}

/**
 * A violation of the framing rules (bad magic, unknown version, oversize frame, …).
 * The connection cannot be trusted any more: it is closed with `reason`, never answered.
 */
export class FpnnProtocolError extends Error {
  override readonly name = 'FpnnProtocolError';
}

export const connectionClosedError = (why = 'connection closed'): RtmError => new RtmError(FpnnErrorCode.CORE_CONNECTION_CLOSED, why);

export const timeoutError = (method: string, ms: number): RtmError =>
  new RtmError(FpnnErrorCode.CORE_TIMEOUT, `quest '${method}' got no answer within ${ms} ms`);

/** A required key absent (or nil): 10009, with the wording the schema's checks use. */
export const missingKeyError = (key: string): RtmError => new RtmError(FpnnErrorCode.PROTO_KEY_NOT_FOUND, `missing required key '${key}'`);
