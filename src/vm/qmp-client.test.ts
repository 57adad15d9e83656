/*
 * The QMP and guest-agent clients: against a real QEMU (no disk, no guest OS, started
 * paused) for the commands and events, and against fake servers in the test for the
 * failures a real QEMU rarely shows (no answer, a malformed or over-long line, a guest
 * agent that answers or refuses). Every QEMU is killed by its pid afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { limits } from '../common/limits.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/temp-pool.js';
import { hasTool } from '../../test/helpers/tools.js';
import { chooseAccel, probeKernel } from './accelerator.js';
import { GuestAgent } from './agent-client.js';
import { QmpClient, QmpCommands } from './qmp-client.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
const servers: net.Server[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  for (const server of servers.splice(0)) server.close();
  for (const dir of dirs.splice(0)) removeTempDir(dir);
});

function tempDir(): string {
  const dir = makeTempDir();
  dirs.push(dir);
  return dir;
}

async function startQemu(extra: string[] = []): Promise<{ qmp: string; agent: string; child: ChildProcess }> {
  const dir = tempDir();
  const qmp = path.join(dir, 'qmp.sock');
  const agent = path.join(dir, 'agent.sock');
  const child = spawn(
    'qemu-system-x86_64',
    ['-machine', 'q35', '-accel', 'tcg', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-qmp', `unix:${qmp},server=on,wait=off`,
      '-chardev', `socket,id=agent0,path=${agent},server=on,wait=off`, '-device', 'virtio-serial-pci,id=vser0',
      '-device', 'virtserialport,bus=vser0.0,chardev=agent0,name=org.qemu.guest_agent.0', ...extra],
    { stdio: 'ignore' },
  );
  children.push(child);
  while (!fs.existsSync(qmp)) await new Promise((resolve) => setTimeout(resolve, 20));
  return { qmp, agent, child };
}

/**
 * QEMU creates its socket file a moment before it listens on it, and a connection in
 * between is refused: retried briefly, as the VM manager does.
 */
async function connectQmp(qmp: string): Promise<QmpClient> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await QmpClient.connect(qmp);
    } catch (error) {
      if (Date.now() > deadline || !(error instanceof Error) || !error.message.includes('ECONNREFUSED')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function fakeServer(onConnection: (socket: net.Socket) => void): string {
  const socketPath = path.join(tempDir(), 'fake.sock');
  const server = net.createServer(onConnection);
  server.listen(socketPath);
  servers.push(server);
  return socketPath;
}

const greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n';

describe.runIf(hasTool('qemu-system-x86_64', 'qemu-system-x86'))('QMP client against QEMU', () => {
  it('negotiates, runs typed commands, delivers events in order and sees QEMU quit', async () => {
    const { qmp, child } = await startQemu(['-device', 'pcie-root-port,id=rp0,chassis=1']);
    const client = await connectQmp(qmp);
    const commands = new QmpCommands(client);
    expect(await commands.queryStatus()).toMatchObject({ status: 'prelaunch', running: false });
    const events: string[] = [];
    client.onEvent((event) => events.push(event.event));
    const resumed = client.waitForEvent('RESUME', { timeoutMs: 10_000 });
    await commands.cont();
    await resumed;
    expect((await commands.queryStatus()).running).toBe(true);
    await commands.stop();
    const reset = client.waitForEvent('RESET', { timeoutMs: 10_000 });
    await commands.systemReset();
    await reset;
    expect(events).toEqual(expect.arrayContaining(['RESUME', 'STOP', 'RESET']));
    expect(events.indexOf('RESUME')).toBeLessThan(events.indexOf('STOP'));
    await commands.blockdevAdd({ driver: 'null-co', 'node-name': 'n0', size: 1048576 });
    await commands.deviceAdd({ driver: 'virtio-blk-pci', id: 'vd0', drive: 'n0', bus: 'rp0' });
    expect((await commands.queryBlockstats()).some((entry) => entry.qdev?.includes('vd0'))).toBe(true);
    await expect(client.execute('no-such-command')).rejects.toMatchObject({ code: 'STRATA_E_QMP', details: { class: 'CommandNotFound' } });
    await expect(commands.blockdevDel('missing')).rejects.toMatchObject({ code: 'STRATA_E_QMP' });
    await expect(commands.deviceDel('missing')).rejects.toMatchObject({ code: 'STRATA_E_QMP', details: { class: 'DeviceNotFound' } });
    // Unplugging a PCIe device asks the guest (there is none to answer here): accepted.
    await commands.deviceDel('vd0');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await commands.quit();
    await client.closed;
    expect(client.isClosed).toBe(true);
    await exited;
    await expect(commands.queryStatus()).rejects.toMatchObject({ code: 'STRATA_E_QMP' });
  });

  it('finds no guest agent in a guest without one, within the timeout', async () => {
    const { agent } = await startQemu();
    await expect(GuestAgent.connect(agent, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'STRATA_E_GUEST_AGENT' });
  });

  it('probes KVM with the newest kernel in /boot, numerically', () => {
    const boot = tempDir();
    expect(probeKernel(boot)).toBeNull();
    expect(probeKernel(path.join(boot, 'missing'))).toBeNull();
    for (const name of ['vmlinuz-6.1.0-9-amd64', 'vmlinuz-6.1.0-10-amd64', 'config-6.1.0-11-amd64']) fs.writeFileSync(path.join(boot, name), '');
    expect(probeKernel(boot)).toBe(path.join(boot, 'vmlinuz-6.1.0-10-amd64'));
  });

  it('chooses an accelerator with a reason, and STRATA_ACCEL forces TCG', async () => {
    const choice = await chooseAccel();
    expect(['kvm', 'tcg']).toContain(choice.accel);
    expect(choice.reason.length).toBeGreaterThan(0);
    process.env.STRATA_ACCEL = 'tcg';
    try {
      expect(await chooseAccel()).toEqual({ accel: 'tcg', reason: 'forced by STRATA_ACCEL' });
    } finally {
      delete process.env.STRATA_ACCEL;
    }
  });
});

describe('QMP client failures', () => {
  it('reports a missing socket, a silent QEMU and a command that is never answered', async () => {
    await expect(QmpClient.connect(path.join(tempDir(), 'none.sock'))).rejects.toMatchObject({ code: 'STRATA_E_QMP' });
    const silent = fakeServer(() => undefined);
    await expect(QmpClient.connect(silent, { connectTimeoutMs: 200 })).rejects.toMatchObject({ code: 'STRATA_E_QMP_TIMEOUT' });
    const mute = fakeServer((socket) => {
      socket.write(greeting);
      socket.on('data', (data) => {
        if (data.toString().includes('qmp_capabilities')) socket.write('{"return": {}, "id": "strata-1"}\n');
      });
    });
    const client = await QmpClient.connect(mute);
    await expect(client.execute('query-status', undefined, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'STRATA_E_QMP_TIMEOUT' });
    client.close();
  });

  it('closes the connection on a malformed or over-long line and fails the pending command', async () => {
    for (const bad of ['{"return": {}, "id": \n', 'not json at all\n', `${'x'.repeat(limits.qmpLineBytesMax + 10)}`]) {
      const server = fakeServer((socket) => {
        socket.write(greeting);
        socket.on('data', (data) => {
          const text = data.toString();
          if (text.includes('qmp_capabilities')) socket.write('{"return": {}, "id": "strata-1"}\n');
          else socket.write(bad);
        });
      });
      const client = await QmpClient.connect(server);
      await expect(client.execute('query-status')).rejects.toMatchObject({ code: 'STRATA_E_QMP' });
      await client.closed;
      expect(client.isClosed).toBe(true);
    }
  });
});

describe('guest agent client', () => {
  it('syncs past stale bytes and the parse error its reset byte draws, then freezes, thaws and reports refusals', async () => {
    let frozen = false;
    const server = fakeServer((socket) => {
      socket.write('{"return": "stale reply from an earlier client"}\n');
      let buffered = '';
      socket.on('data', (data) => {
        // As qemu-ga does: the 0xFF that resets its parser is answered with a parse error,
        // on its own, before the reply to what follows.
        if (data.includes(0xff)) socket.write('{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n');
        buffered += data.toString('latin1').replace(/\xff/g, '');
        // The replies come in writes of their own (a virtio-serial channel does not join them).
        setTimeout(answer, 20);
      });
      const answer = () => {
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const request = JSON.parse(buffered.slice(0, newline)) as { execute: string; arguments?: { id: number } };
          buffered = buffered.slice(newline + 1);
          if (request.execute === 'guest-sync-delimited') socket.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${request.arguments!.id}}\n`)]));
          else if (request.execute === 'guest-fsfreeze-freeze') socket.write(frozen ? '{"error": {"class": "GenericError", "desc": "already frozen"}}\n' : ((frozen = true), '{"return": 2}\n'));
          else if (request.execute === 'guest-fsfreeze-thaw') socket.write(((frozen = false), '{"return": 2}\n'));
          else if (request.execute === 'guest-fsfreeze-status') socket.write(`{"return": "${frozen ? 'frozen' : 'thawed'}"}\n`);
          else socket.write('{"return": {}}\n');
        }
      };
    });
    const agent = await GuestAgent.connect(server);
    await agent.ping();
    expect(await agent.fsfreezeFreeze()).toBe(2);
    expect(await agent.fsfreezeStatus()).toBe('frozen');
    await expect(agent.fsfreezeFreeze()).rejects.toMatchObject({ code: 'STRATA_E_GUEST_AGENT' });
    expect(await agent.fsfreezeThaw()).toBe(2);
    agent.close();
  });
});
