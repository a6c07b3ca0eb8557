import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

/** A certificate chain and its private key, read and checked together (PEM). */
export interface TlsCredentials {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The leaf certificate (the first of the chain), for the log and the expiry metric. */
  readonly subject: string;
  /** Its subjectAltName as OpenSSL prints it ("DNS:example.com, IP Address:…"), or '' without one. */
  readonly names: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 fingerprint of the leaf, as clients show it: tells two reloads apart in the log. */
  readonly fingerprint256: string;
}

/** Credentials that cannot be served, with a message that names the file and what is wrong. */
export class TlsCredentialsError extends Error {
  override readonly name = 'TlsCredentialsError';
}

/**
 * Reads the PEM certificate chain and private key and checks that they can be served: both parse,
 * and the key is the certificate's (node refuses a mismatch only here, at context creation; at a
 * handshake it would fail every client instead). A certificate out of its validity period is not
 * refused (a server that would not start for it is worse than one clients refuse), but the caller
 * logs it.
 */
export function loadTlsCredentials(certFile: string, keyFile: string): TlsCredentials {
  const cert = readPem(certFile, 'RTM_TLS_CERT', 'certificate');
  const key = readPem(keyFile, 'RTM_TLS_KEY', 'private key');
  // OpenSSL would say only "bad decrypt" (there is no passphrase to give it).
  if (key.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || key.includes('Proc-Type: 4,ENCRYPTED'))
    throw new TlsCredentialsError(
      `RTM_TLS_KEY ${keyFile} is encrypted (protected by a passphrase, which the server has no way to be given): ` +
        'give it the key unencrypted, e.g. openssl pkey -in key.pem -out key-plain.pem, readable by the server alone',
    );
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsCredentialsError(`RTM_TLS_CERT ${certFile} holds no PEM certificate: ${(err as Error).message}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const message = (err as Error).message;
    throw new TlsCredentialsError(
      /key values mismatch/i.test(message)
        ? `RTM_TLS_KEY ${keyFile} is not the private key of the certificate in RTM_TLS_CERT ${certFile}`
        : `RTM_TLS_CERT ${certFile} / RTM_TLS_KEY ${keyFile} cannot be used: ${message}`,
    );
  }
  return {
    cert,
    key,
    subject: leaf.subject.replace(/\n/g, ', '),
    names: leaf.subjectAltName ?? '',
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    fingerprint256: leaf.fingerprint256,
  };
}

function readPem(file: string, variable: string, what: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'cannot be read: permission denied'
          : code === 'EISDIR'
            ? 'is a directory, not a file'
            : (err as Error).message;
    throw new TlsCredentialsError(`${variable} ${file} (the ${what}) ${why}`);
  }
  if (!bytes.includes('-----BEGIN ')) throw new TlsCredentialsError(`${variable} ${file} is not PEM: the ${what} must be PEM text`);
  return bytes;
}

/** Whole days from `now` until the certificate expires (negative once it has). */
export function daysLeft(credentials: Pick<TlsCredentials, 'notAfter'>, now = Date.now()): number {
  return Math.floor((credentials.notAfter.getTime() - now) / 86_400_000);
}
