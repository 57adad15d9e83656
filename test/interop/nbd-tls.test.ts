/*
 * TLS through STARTTLS with x509 certificates, against real clients: qemu-img and
 * qemu-io with a tls-creds-x509 object, nbdinfo with an nbds:// URI. In TLS-required mode
 * a plain client gets nowhere; with client verification, a client without a certificate
 * signed by the CA is refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MiB } from '../../src/common/units.js';
import { hasTool, runOk, runTool } from '../helpers/tools.js';
import { startNbd, type NbdFixture } from '../helpers/nbd-fixture.js';
import { clientPkiDir, makeTestPki } from '../helpers/tls-certs.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-pool.js';

const haveTools = hasTool('openssl', 'openssl') && hasTool('qemu-img', 'qemu-utils') && hasTool('nbdinfo', 'libnbd-bin');

function qemuTlsArgs(dir: string, port: number, exportName: string): string[] {
  return [
    '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${dir}`,
    '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=${exportName},tls-creds=tls0`,
  ];
}

describe.skipIf(!haveTools)('NBD over TLS', () => {
  let pki: string;
  let clientDir: string;

  beforeAll(async () => {
    pki = makeTempDir();
    await makeTestPki(pki);
    clientDir = clientPkiDir(pki);
  });

  afterAll(() => removeTempDir(pki));

  async function serve(options: { required: boolean; verifyClients?: boolean }): Promise<NbdFixture> {
    const read = (name: string) => fs.readFileSync(path.join(pki, name));
    const nbd = await startNbd({
      tls: { cert: read('server-cert.pem'), key: read('server-key.pem'), ca: read('ca-cert.pem'), required: options.required, verifyClients: options.verifyClients },
    });
    await nbd.pool.createVolume('disk', 4 * MiB);
    return nbd;
  }

  it('serves qemu-img, qemu-io and nbdinfo over TLS, and refuses plain clients when TLS is required', async () => {
    const nbd = await serve({ required: true });
    try {
      const info = await runOk('qemu-img', ['info', '--output=json', ...qemuTlsArgs(clientDir, nbd.port, 'disk')]);
      expect(JSON.parse(info)).toMatchObject({ 'virtual-size': 4 * MiB });
      await runOk('qemu-io', ['-c', 'write -P 0x7e 0 64k', '-c', 'flush', ...qemuTlsArgs(clientDir, nbd.port, 'disk')]);
      const read = await runOk('qemu-io', ['-c', 'read -P 0x7e 0 64k', ...qemuTlsArgs(clientDir, nbd.port, 'disk')]);
      expect(read).not.toMatch(/failed/);
      const listing = await runOk('nbdinfo', ['--list', `nbds://127.0.0.1:${nbd.port}/?tls-certificates=${clientDir}`]);
      expect(listing).toContain('export="disk"');
      expect(await runOk('nbdinfo', ['--size', `nbds://127.0.0.1:${nbd.port}/disk?tls-certificates=${clientDir}`])).toContain(String(4 * MiB));
      const plain = await runTool('qemu-img', ['info', nbd.uri('disk')]);
      expect(plain.code).not.toBe(0);
      expect(plain.stderr).toMatch(/TLS/i);
      const plainList = await runTool('nbdinfo', ['--list', nbd.uri('')]);
      expect(plainList.code).not.toBe(0);
      expect(nbd.server.clients()).toEqual([]);
      expect((await nbd.pool.openVolume('disk').read(0, 4)).equals(Buffer.alloc(4, 0x7e))).toBe(true);
    } finally {
      await nbd.stop();
    }
  });

  it('offers TLS to clients that want it and still serves plain ones when TLS is optional', async () => {
    const nbd = await serve({ required: false });
    try {
      expect(await runOk('qemu-img', ['info', nbd.uri('disk')])).toContain('4 MiB');
      expect(await runOk('qemu-img', ['info', ...qemuTlsArgs(clientDir, nbd.port, 'disk')])).toContain('4 MiB');
    } finally {
      await nbd.stop();
    }
  });

  it('refuses a client without a certificate when client verification is on', async () => {
    const nbd = await serve({ required: true, verifyClients: true });
    try {
      expect(await runOk('nbdinfo', ['--size', `nbds://127.0.0.1:${nbd.port}/disk?tls-certificates=${clientDir}`])).toContain(String(4 * MiB));
      const anonymous = makeTempDir();
      try {
        fs.copyFileSync(path.join(pki, 'ca-cert.pem'), path.join(anonymous, 'ca-cert.pem'));
        const refused = await runTool('nbdinfo', ['--size', `nbds://127.0.0.1:${nbd.port}/disk?tls-certificates=${anonymous}`]);
        expect(refused.code).not.toBe(0);
      } finally {
        removeTempDir(anonymous);
      }
    } finally {
      await nbd.stop();
    }
  });
});
