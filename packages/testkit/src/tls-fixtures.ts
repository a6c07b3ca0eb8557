import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A test-only TLS identity: PEM files (for RTM_TLS_CERT / RTM_TLS_KEY) and the certificate's bytes (a client's `ca`). */
export interface TlsFixture {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
}

const fixture = (name: 'a' | 'b'): TlsFixture => {
  const certFile = fileURLToPath(new URL(`../fixtures/tls/${name}.crt`, import.meta.url));
  return { certFile, keyFile: fileURLToPath(new URL(`../fixtures/tls/${name}.key`, import.meta.url)), cert: readFileSync(certFile) };
};

/**
 * Two self-signed certificates for localhost, 127.0.0.1 and ::1 (fixtures/tls/make.sh), each its
 * own CA: a client trusts one by passing its `cert` as `ca`. Two, so that a test can swap them.
 */
export const TLS_FIXTURES = { a: fixture('a'), b: fixture('b') } as const;
