import assert from 'node:assert/strict';
import { connect as connectTcp, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as connectTls } from 'node:tls';
import { RtmError } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, TLS_FIXTURES, type TestServer } from '@rtm/testkit';
import fc from 'fast-check';
import { ConfigError, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { parseProxyHeader, ProxyHeaderError } from '../src/transport/proxy-protocol.js';

// The PROXY protocol on the client gate (RTM_CLIENT_PROXY_PROTOCOL_FROM): a layer-4 balancer says
// whose connection it opens. Parsed by hand (two small formats read from a stream), so tested
// against the spec's examples, byte by byte, and with random input; then over real sockets, where
// the internal-network check of the `*` methods shows which address the gate took for the peer.

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

function v2Tcp4(source: string, sourcePort: number, tlv = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => (body[i] = Number(octet)));
  body.set([10, 0, 0, 1], 4);
  body.writeUInt16BE(sourcePort, 8);
  body.writeUInt16BE(13321, 10);
  return v2(1, 0x11, Buffer.concat([body, tlv]));
}

describe('PROXY protocol header parser', () => {
  const parsed = (text: string | Buffer) => parseProxyHeader(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);

  it('v1: TCP4, TCP6 and UNKNOWN; what follows the line is not the header', () => {
    const lines = [
      ['PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n', { kind: 'proxied', remote: '192.168.0.1:56324' }],
      ['PROXY TCP6 2001:db8::1 ::1 65535 13321\r\n', { kind: 'proxied', remote: '2001:db8::1:65535' }],
      ['PROXY UNKNOWN\r\n', { kind: 'local' }],
      ['PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n', { kind: 'local' }],
    ] as const;
    for (const [line, header] of lines) assert.deepEqual(parsed(`${line}GET / HTTP/1.1\r\n`), { header, length: line.length }, line);
  });

  it('v1: refused for a bad family, address or port, or a line over 107 bytes', () => {
    for (const bad of [
      'PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n',
      'PROXY TCP4 1.2.3 1.2.3.5 1 2\r\n',
      'PROXY TCP4 ::1 1.2.3.5 1 2\r\n',
      'PROXY TCP6 1.2.3.4 ::1 1 2\r\n',
      'PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n',
      'PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n',
      'PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n',
      `PROXY TCP4 ${'1'.repeat(120)}`,
    ])
      assert.throws(() => parsed(bad), ProxyHeaderError, bad);
  });

  it('v2: TCP4 and TCP6 (TLVs skipped), LOCAL and UNSPEC as the balancer itself', () => {
    const tlv = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_UNIQUE_ID "abc"
    assert.deepEqual(parsed(Buffer.concat([v2Tcp4('203.0.113.7', 51234, tlv), Buffer.from('FPNN')])), {
      header: { kind: 'proxied', remote: '203.0.113.7:51234' },
      length: 16 + 12 + tlv.length,
    });
    const six = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(six, 0);
    six[31] = 1;
    six.writeUInt16BE(40000, 32);
    assert.deepEqual(parsed(v2(1, 0x21, six)), { header: { kind: 'proxied', remote: '2001:db8::1:40000' }, length: 52 });
    const mapped = Buffer.alloc(36);
    Buffer.from('00000000000000000000ffffc6336407', 'hex').copy(mapped, 0);
    mapped.writeUInt16BE(1, 32);
    assert.deepEqual(parsed(v2(1, 0x21, mapped))?.header, { kind: 'proxied', remote: '::ffff:198.51.100.7:1' });
    assert.deepEqual(parsed(v2(0, 0x00, Buffer.alloc(0))), { header: { kind: 'local' }, length: 16 });
    assert.deepEqual(parsed(v2(0, 0x11, Buffer.alloc(12))), { header: { kind: 'local' }, length: 28 }, 'LOCAL: addresses ignored');
    assert.deepEqual(parsed(v2(1, 0x31, Buffer.alloc(216))), { header: { kind: 'local' }, length: 232 }, 'unix socket: no client address');
  });

  it('v2: refused for another version or command, addresses cut short, or more than 2 KiB', () => {
    const header = v2Tcp4('1.2.3.4', 5);
    for (const [bad, why] of [
      [Buffer.concat([V2_SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), Buffer.alloc(12)]), 'version 1'],
      [Buffer.concat([V2_SIGNATURE, Buffer.from([0x22, 0x11, 0, 12]), Buffer.alloc(12)]), 'command 2'],
      [v2(1, 0x11, Buffer.alloc(8)), 'TCP4 in 8 bytes'],
      [v2(1, 0x21, Buffer.alloc(20)), 'TCP6 in 20 bytes'],
      [Buffer.concat([header.subarray(0, 14), Buffer.from([0x08, 0x01])]), '2049 bytes announced'],
    ] as const)
      assert.throws(() => parsed(bad), ProxyHeaderError, why);
  });

  it('neither: refused from the first byte that cannot start a header', () => {
    assert.throws(() => parsed('FPNN'), ProxyHeaderError);
    assert.throws(() => parsed('GET / HTTP/1.1\r\n'), ProxyHeaderError);
    assert.throws(() => parsed('PROXX'), ProxyHeaderError);
    assert.throws(() => parsed(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x01])), ProxyHeaderError);
  });

  it('any split: every proper prefix of a header is "not whole yet", the whole gives the same answer', () => {
    const headers = fc.oneof(
      fc
        .tuple(fc.ipV4(), fc.ipV4(), fc.nat(65535), fc.nat(65535))
        .map(([s, d, sp, dp]) => Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`, 'latin1')),
      fc.tuple(fc.ipV4(), fc.nat(65535), fc.uint8Array({ maxLength: 64 })).map(([s, sp, tlv]) => v2Tcp4(s, sp, Buffer.from(tlv))),
    );
    fc.assert(
      fc.property(headers, fc.uint8Array({ maxLength: 32 }), (header, rest) => {
        const whole = parseProxyHeader(Buffer.concat([header, rest]));
        assert.equal(whole?.length, header.length);
        for (let n = 0; n < header.length; n++) assert.equal(parseProxyHeader(header.subarray(0, n)), undefined, `prefix of ${n}`);
      }),
    );
  });

  it('random bytes: a header, "not whole yet" or ProxyHeaderError, never another failure', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.concat([V2_SIGNATURE, b])),
        ),
        (bytes) => {
          try {
            const result = parseProxyHeader(bytes);
            if (result) assert.ok(result.length <= bytes.length);
          } catch (err) {
            assert.ok(err instanceof ProxyHeaderError, String(err));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('PROXY protocol on the client gate', () => {
  let server: TestServer;
  const lines: Record<string, unknown>[] = [];
  let tlsPort: number;

  before(async () => {
    const logger = createLogger('info', { write: (s: string) => lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
    server = await startTestServer(
      { clientProxyProtocolFrom: '127.0.0.1, ::1', tlsCertFile: TLS_FIXTURES.a.certFile, tlsKeyFile: TLS_FIXTURES.a.keyFile },
      { logger },
    );
    tlsPort = server.clientTlsPort!;
  });
  after(async () => {
    await server.close();
  });

  /** A connection to `port` that sends `header` first, as a balancer does. */
  const viaBalancer = (port: number, header: Buffer | string) => (ready: () => void) => {
    const socket = connectTcp(port, '127.0.0.1', ready);
    socket.write(header);
    return socket;
  };
  const header = (client: string) => `PROXY TCP4 ${client} 10.0.0.1 40001 13321\r\n`;
  const forbidden = (err: unknown) => err instanceof RtmError && err.code === 20013 && /internal networks only/.test(err.message);

  it('FPNN/TCP: the client the header names is the peer (a public one may not call *status, a private one may)', async () => {
    const outside = await RawClient.overSocket(viaBalancer(server.clientPort, header('203.0.113.7')));
    const inside = await RawClient.overSocket(viaBalancer(server.clientPort, v2Tcp4('10.1.2.3', 40002)));
    try {
      await assert.rejects(outside.quest('*status'), forbidden);
      assert.deepEqual(await inside.quest('*status'), { status: true });
    } finally {
      outside.close();
      inside.close();
    }
  });

  it('WebSocket and a login: the same, and the TLS port reads the header before the handshake', async () => {
    const ws = await RawClient.websocket(server.clientEndpoint, '/service/websocket', {
      createConnection: () => viaBalancer(server.clientPort, header('198.51.100.9'))(() => undefined),
    });
    try {
      await assert.rejects(ws.quest('*status'), forbidden);
    } finally {
      ws.close();
    }

    const backend = await RawClient.tcp(server.serverEndpoint);
    const uid = 9_200_000_000_000_001n;
    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    backend.close();
    const overTls = await RawClient.overSocket((ready) => {
      const raw = viaBalancer(tlsPort, v2Tcp4('198.51.100.10', 40003))(() => undefined) as Socket;
      return connectTls({ socket: raw, ca: TLS_FIXTURES.a.cert, servername: 'localhost' }, ready);
    });
    try {
      assert.deepEqual(await overTls.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      await assert.rejects(overTls.quest('*infos'), forbidden);
    } finally {
      overTls.close();
    }
  });

  it('a connection from the balancer without a header is closed, and the refusal logged', async () => {
    const before = lines.length;
    const raw = await RawClient.tcp(`127.0.0.1:${server.clientPort}`);
    await assert.rejects(raw.quest('*status'));
    await raw.closed;
    const refusal = lines.slice(before).find((l) => l.msg === 'connection refused');
    assert.equal(refusal?.reason, 'bad PROXY header');
    assert.match(String(refusal?.detail), /^from a PROXY protocol source: no PROXY protocol header/);
  });

  it('an address not listed connects without a header, as before', async () => {
    const direct = await startTestServer({ clientProxyProtocolFrom: '10.9.9.9/32' });
    const raw = await RawClient.tcp(direct.clientEndpoint);
    try {
      assert.deepEqual(await raw.quest('*status'), { status: true });
    } finally {
      raw.close();
      await direct.close();
    }
  });

  it('a header that never comes closes the connection after RTM_IDLE_TIMEOUT_MS', async () => {
    const slow = await startTestServer({ clientProxyProtocolFrom: '127.0.0.1', idleTimeoutMs: 1000, pingIntervalMs: 500 });
    try {
      const socket = connectTcp(slow.clientPort, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write('PROXY TCP4 '); // and nothing more
      const started = Date.now();
      await new Promise((resolve) => socket.once('close', resolve));
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 5000, `closed after ${took} ms`);
    } finally {
      await slow.close();
    }
  });

  it('RTM_CLIENT_PROXY_PROTOCOL_FROM: a bad entry refuses the start, naming it', () => {
    for (const [value, why] of [
      ['10.0.0.0/33', /'10\.0\.0\.0\/33': bad prefix length/],
      ['balancer.local', /'balancer\.local' is not an address or a CIDR range/],
    ] as const)
      assert.throws(
        () => resolveConfig({ RTM_CLIENT_PROXY_PROTOCOL_FROM: value }),
        (err: unknown) =>
          err instanceof ConfigError && /^RTM_CLIENT_PROXY_PROTOCOL_FROM must list/.test(err.message) && why.test(err.message),
      );
  });
});
