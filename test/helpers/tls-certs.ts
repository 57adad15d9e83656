/*
 * A throwaway PKI for TLS tests, made with openssl (Debian package openssl): a CA, a
 * server certificate for 127.0.0.1/localhost and a client certificate, laid out the way
 * QEMU's tls-creds-x509 and libnbd's tls-certificates expect a directory:
 *   ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from './tools.js';

async function openssl(dir: string, args: string[]): Promise<void> {
  await runOk('openssl', args.map((arg) => arg.replaceAll('%D', dir)));
}

async function issue(dir: string, name: string, subject: string, extensions: string): Promise<void> {
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
  await openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `%D/${name}-key.pem`, '-out', `%D/${name}.csr`, '-subj', subject]);
  await openssl(dir, [
    'x509', '-req', '-in', `%D/${name}.csr`, '-CA', '%D/ca-cert.pem', '-CAkey', '%D/ca-key.pem', '-CAcreateserial',
    '-out', `%D/${name}-cert.pem`, '-days', '2', '-sha256', '-extfile', `%D/${name}.ext`,
  ]);
}

export async function makeTestPki(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await openssl(dir, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', '%D/ca-key.pem', '-out', '%D/ca-cert.pem', '-days', '2',
    '-subj', '/CN=Strata test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await issue(dir, 'server', '/CN=localhost', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n'));
  await issue(dir, 'client', '/CN=strata-test-client', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ].join('\n'));
}

/** A directory holding only what a client needs (CA, client cert and key). */
export function clientPkiDir(pki: string): string {
  const dir = path.join(pki, 'client');
  fs.mkdirSync(dir, { recursive: true });
  for (const file of ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']) fs.copyFileSync(path.join(pki, file), path.join(dir, file));
  return dir;
}
