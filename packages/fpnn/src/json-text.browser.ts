/**
 * json-text.ts as the client SDK's browser bundle has it: no JSON. The SDK sends msgpack only and
 * the server answers and pushes in the encoding of the connection's quests, so no JSON payload
 * comes; leaving json-bigint and bignumber.js out makes the bundle a quarter smaller. A JSON frame
 * would be refused like any payload that cannot be read.
 */
const why = 'JSON payloads are not part of the browser bundle (the client SDK speaks msgpack)';

export function parseJsonText(_text: string): unknown {
  throw new SyntaxError(why);
}

export function stringifyJsonText(_value: unknown, _replacer?: (key: string, value: unknown) => unknown): string {
  throw new TypeError(why);
}
