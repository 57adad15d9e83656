/*
 * VMs on Strata volumes with real QEMU (TCG unless KVM really works): a tiny guest (the
 * Debian cloud kernel and a busybox initramfs the harness builds) whose init reads a
 * counter from its disk, prints it on the serial console, writes the next value and a
 * random block, and waits. Proves: boot to a marker; VM snapshot, restore and boot back
 * to the snapshot's state; three clones of a template booting at once and diverging;
 * guest TRIM lowering the pool's stored bytes; tap and bridge NICs on a private bridge;
 * a VM snapshot frozen through a real guest agent (qemu-ga in the guest);
 * bad definitions refused with nothing created; the daemon killed while a VM runs, restarted, reattached, and the VM stopped
 * cleanly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../../src/common/log.js';
import { MiB } from '../../src/common/units.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/index.js';
import type { VmDefinition } from '../../src/vm/index.js';
import type { VmStore } from '../../src/vm/vm-store.js';
import { buildInitramfs, findCloudKernel, guestInitPreamble, haveGuestTools } from '../helpers/guest-image.js';
import { bridgeHelperAllowed, createSegment, haveSegmentSetup, segmentBridge, segmentPeer, segmentPrefix } from '../helpers/host-network.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-pool.js';
import { hasTool, runOk } from '../helpers/tools.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const kernel = findCloudKernel();
const haveVmTools = haveGuestTools([['mkfs.ext4', 'e2fsprogs']]);
const haveSegment = haveVmTools && haveSegmentSetup();
const guestAgent = '/usr/sbin/qemu-ga';
const haveAgent = haveVmTools && hasTool('qemu-ga', 'qemu-guest-agent') && fs.existsSync(guestAgent);

const initScript = `${guestInitPreamble}echo "STRATA-BOOT"
echo "STRATA-CPUS $(grep -c ^processor /proc/cpuinfo)"
grep -q strata.edited=yes /proc/cmdline && echo "STRATA-EDITED"
if grep -q strata.mode=cidata /proc/cmdline; then
  while [ ! -b /dev/vdb1 ]; do sleep 0.1; done
  dd if=/dev/vdb1 bs=512 count=1 2>/dev/null | grep -qi cidata && echo "STRATA-CIDATA label"
  dd if=/dev/vdb bs=1M count=4 2>/dev/null | grep -q STRATA-USERDATA && echo "STRATA-CIDATA user-data"
  dd if=/dev/vdb bs=1M count=4 2>/dev/null | grep -q "local-hostname: seeded" && echo "STRATA-CIDATA meta-data"
elif grep -q strata.mode=net /proc/cmdline; then
  for arg in $(cat /proc/cmdline); do
    case "$arg" in strata.ip=*) address=\${arg#strata.ip=} ;; strata.peer=*) peer=\${arg#strata.peer=} ;; esac
  done
  echo "STRATA-MAC $(cat /sys/class/net/eth0/address)"
  ip link set eth0 up && ip addr add "$address" dev eth0
  tries=0
  until ping -c 1 -W 1 "$peer" >/dev/null 2>&1 || [ $tries -ge 30 ]; do tries=$((tries + 1)); done
  [ $tries -lt 30 ] && echo "STRATA-PING-OK $peer" || echo "STRATA-PING-FAILED $peer"
elif grep -q strata.mode=agent /proc/cmdline; then
  # Nothing reaches the disk unless asked: no periodic writeback, ext4 commits every 10 min.
  echo 0 > /proc/sys/vm/dirty_writeback_centisecs
  echo 360000 > /proc/sys/vm/dirty_expire_centisecs
  mount -t ext4 -o commit=600 /dev/vda /mnt
  for port in /sys/class/virtio-ports/*; do [ "$(cat $port/name)" = org.qemu.guest_agent.0 ] && channel=/dev/\${port##*/}; done
  /usr/sbin/qemu-ga -m virtio-serial -p "$channel" -t /run &
  echo STRATA-UNSYNCED-NOTE > /mnt/note.txt
  echo "STRATA-READY"
  tick=0
  while true; do sleep 1; tick=$((tick + 1)); echo $tick > /mnt/tick && echo "STRATA-TICK $tick"; done
elif grep -q strata.mode=trim /proc/cmdline; then
  mount -t ext4 -o discard /dev/vda /mnt && rm /mnt/big.bin && sync && fstrim -v /mnt && umount /mnt && echo "STRATA-TRIMMED"
else
  count=$(dd if=/dev/vda bs=16 count=1 2>/dev/null | tr -dc 0-9 | sed 's/^0*//')
  [ -z "$count" ] && count=0
  echo "STRATA-COUNT $count"
  printf "%016d" $((count + 1)) | dd of=/dev/vda bs=16 count=1 2>/dev/null
  dd if=/dev/urandom of=/dev/vda bs=4096 count=1 seek=256 2>/dev/null
  sync
  echo "STRATA-WROTE $((count + 1))"
fi
echo "STRATA-READY"
while true; do sleep 1; done
`;

let work: string;
let initrd: string;

/** Alive and not a zombie (a reparented QEMU may wait for a reaper that never comes). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

function guest(name: string, disks: string[], mode = 'counter'): VmDefinition {
  return {
    name,
    cpus: 1,
    memoryBytes: 128 * MiB,
    disks: disks.map((volume) => ({ volume })),
    nics: [],
    cloudInit: null,
    boot: { kernel: kernel!.kernel, initrd, append: `console=ttyS0 panic=-1 rdinit=/init strata.mode=${mode}` },
  };
}

const bootTimeoutMs = 120_000;

describe.skipIf(!haveVmTools)('VMs with disks on Strata volumes', () => {
  let daemon: RunningDaemon;
  let dataDir: string;

  beforeAll(async () => {
    work = makeTempDir();
    initrd = path.join(work, 'initrd.cpio');
    buildInitramfs(work, kernel!.version, initScript, initrd, haveAgent ? [guestAgent] : []);
    dataDir = path.join(work, 'data');
    daemon = await startDaemon({ dataDir, nbd: null, http: { host: '127.0.0.1', port: 0 }, nbdSocket: null, tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
  });

  afterAll(async () => {
    if (daemon) {
      for (const vm of daemon.vms.list()) if (vm.state !== 'stopped') await daemon.vms.stop(vm.name, { force: true }).catch(() => undefined);
      await daemon.stop();
    }
    removeTempDir(work);
  });

  const pool = () => daemon.pools.get('default');

  async function marker(vm: string, text: string): Promise<string> {
    const serial = daemon.vms.console(vm);
    await serial.waitFor(text, AbortSignal.timeout(bootTimeoutMs));
    return serial.recent().toString('utf8');
  }

  /**
   * `strata vm console boot` in a child process (stdin a pipe, not a terminal): it shows
   * the console's backlog, sends what is typed (the guest's tty echoes it), and leaves on
   * Ctrl-] with exit code 0.
   */
  async function expectTerminalConsole(token: string): Promise<void> {
    const url = `http://127.0.0.1:${daemon.httpAddress!.port}`;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/run.ts'), '--url', url, '--token', token, 'vm', 'console', 'boot'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    try {
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (data: Buffer) => (stdout += data.toString('utf8')));
      child.stderr.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
      const until = async (what: () => boolean, label: string) => {
        for (const deadline = Date.now() + 30_000; !what(); ) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}; stdout ${stdout}; stderr ${stderr}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      await until(() => stdout.includes('STRATA-READY'), 'the backlog');
      expect(stderr).toContain('connected to the serial console of boot');
      child.stdin.write('typed-into-console');
      await until(() => stdout.includes('typed-into-console'), 'the echo of typed input');
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.stdin.write(Buffer.from([0x1d]));
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }

  it('boots a VM from its volume, shows the marker on the serial console (also over WebSocket), and pauses and resumes it', async () => {
    await pool().createVolume('boot0', 8 * MiB);
    const created = await daemon.vms.create(guest('boot', ['boot0']));
    expect(created.state).toBe('stopped');
    const started = await daemon.vms.start('boot');
    expect(started.state).toBe('running');
    expect(['kvm', 'tcg']).toContain(started.accel!.accel);
    expect(await marker('boot', 'STRATA-READY')).toContain('STRATA-COUNT 0');
    const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const socket = new WebSocket(`ws://127.0.0.1:${daemon.httpAddress!.port}/api/v1/vms/boot/console?access_token=${token}`);
    const first = await new Promise<string>((resolve, reject) => {
      socket.once('message', (data: Buffer) => resolve(data.toString('utf8')));
      socket.once('error', reject);
    });
    expect(first).toContain('STRATA-BOOT');
    const refused = new WebSocket(`ws://127.0.0.1:${daemon.httpAddress!.port}/api/v1/vms/boot/console?access_token=strata_wrong`);
    const refusal = await new Promise<{ code: number; reason: string }>((resolve) => refused.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    expect(refusal.code).toBe(4401);
    expect(refusal.reason).toMatch(/^STRATA_E_UNAUTHORIZED: /);
    await expectTerminalConsole(token);
    expect((await daemon.vms.pause('boot')).state).toBe('paused');
    expect((await daemon.vms.resume('boot')).state).toBe('running');
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    expect((await daemon.vms.stop('boot', { timeoutMs: 500 })).state).toBe('stopped');
    expect(await closed).toBe(1000);
    expect(daemon.vms.get('boot').pid).toBeNull();
  });

  it('restores a VM snapshot: the guest boots back to the state it had when the snapshot was taken', async () => {
    await pool().createVolume('snap0', 8 * MiB);
    await daemon.vms.create(guest('snapper', ['snap0']));
    await daemon.vms.start('snapper');
    expect(await marker('snapper', 'STRATA-READY')).toContain('STRATA-WROTE 1');
    const snapshot = await daemon.vms.snapshot('snapper', 'one');
    expect(snapshot.method).toBe('pause');
    expect(daemon.vms.get('snapper').state).toBe('running');
    await daemon.vms.stop('snapper', { force: true });
    await daemon.vms.start('snapper');
    expect(await marker('snapper', 'STRATA-READY')).toContain('STRATA-COUNT 1');
    await daemon.vms.stop('snapper', { force: true });
    await expect(daemon.vms.start('snapper').then(() => daemon.vms.restore('snapper', 'one'))).rejects.toMatchObject({ code: 'STRATA_E_VM_STATE' });
    await daemon.vms.stop('snapper', { force: true });
    await daemon.vms.restore('snapper', 'one');
    await daemon.vms.start('snapper');
    const output = await marker('snapper', 'STRATA-READY');
    expect(output).toContain('STRATA-COUNT 1');
    expect(output).not.toContain('STRATA-COUNT 2');
    await daemon.vms.stop('snapper', { force: true });
  });

  it('clones a template into three VMs that boot at once and diverge', async () => {
    await pool().createVolume('tmpl0', 8 * MiB);
    await pool().openVolume('tmpl0').write(0, Buffer.from('0000000000000041'), { fua: true });
    await daemon.vms.create(guest('tmpl', ['tmpl0']));
    const names = ['c1', 'c2', 'c3'];
    for (const name of names) expect((await daemon.vms.clone('tmpl', undefined, name)).definition.disks[0].volume).toBe(`${name}-disk0`);
    await Promise.all(names.map((name) => daemon.vms.start(name)));
    for (const name of names) expect(await marker(name, 'STRATA-READY')).toContain('STRATA-COUNT 41');
    await Promise.all(names.map((name) => daemon.vms.stop(name, { force: true })));
    const blocks = await Promise.all(names.map((name) => pool().openVolume(`${name}-disk0`).read(256 * 4096, 4096)));
    expect(new Set(blocks.map((block) => block.toString('hex'))).size).toBe(3);
    expect((await pool().openVolume('tmpl0').read(0, 16)).toString()).toBe('0000000000000041');
    expect((await pool().openVolume('c1-disk0').read(0, 16)).toString()).toBe('0000000000000042');
  });

  it('passes guest TRIM through: fstrim in the guest lowers the pool stored bytes after compaction', async () => {
    const fsDir = path.join(work, 'trimfs');
    fs.mkdirSync(fsDir);
    fs.writeFileSync(path.join(fsDir, 'big.bin'), randomBytes(24 * MiB));
    const image = path.join(work, 'trim.raw');
    await runOk('mkfs.ext4', ['-q', '-F', '-d', fsDir, image, '64M']);
    const volume = pool().openVolume((await pool().createVolume('trim0', 64 * MiB)).name);
    await volume.write(0, fs.readFileSync(image), { fua: true });
    await pool().reclaim({ skipGrace: true });
    const before = (await pool().stats()).storedBytes;
    await daemon.vms.create(guest('trimmer', ['trim0'], 'trim'));
    await daemon.vms.start('trimmer');
    expect(await marker('trimmer', 'STRATA-READY')).toContain('STRATA-TRIMMED');
    await daemon.vms.stop('trimmer', { force: true });
    await pool().reclaim({ skipGrace: true, liveFractionMax: 1.01 });
    const after = (await pool().stats()).storedBytes;
    expect(after).toBeLessThan(before - 8 * MiB);
  });

  it.skipIf(!haveSegment)('puts a tap NIC and a bridge NIC on a host bridge: each guest, with the MAC address of its definition, and a peer on the bridge reach each other; a bridge the helper does not allow fails the start', async () => {
    const segment = createSegment();
    try {
      const withNic = (name: string, host: number, nic: VmDefinition['nics'][number]): VmDefinition => {
        const base = guest(name, [`${name}0`], 'net');
        return { ...base, nics: [nic], boot: { ...base.boot!, append: `${base.boot!.append} strata.ip=${segmentPrefix}.${host}/24 strata.peer=${segmentPeer}` } };
      };
      const guests: [VmDefinition, string][] = [[withNic('nictap', 2, { mode: 'tap', tap: segment.newTap() }), `${segmentPrefix}.2`]];
      if (bridgeHelperAllowed()) guests.push([withNic('nicbridge', 3, { mode: 'bridge', bridge: segmentBridge }), `${segmentPrefix}.3`]);
      for (const [definition] of guests) {
        await pool().createVolume(`${definition.name}0`, 4 * MiB);
        await daemon.vms.create(definition);
      }
      // The tap guest's row as an older daemon wrote it, without addresses: it gets one at its start.
      const store = (daemon.vms as unknown as { store: VmStore }).store;
      store.setDefinition({ ...store.get('nictap')!.definition, nics: [{ mode: 'tap', tap: (guests[0][0].nics[0] as { tap: string }).tap }] });
      expect(daemon.vms.get('nictap').definition.nics[0].mac).toBeUndefined();
      for (const [definition] of guests) await daemon.vms.start(definition.name);
      const macs = new Set<string>();
      for (const [definition, address] of guests) {
        const output = await marker(definition.name, 'STRATA-READY');
        expect(output).toContain(`STRATA-PING-OK ${segmentPeer}`);
        // The guest's NIC has the address its definition was given, its own on the bridge.
        const mac = daemon.vms.get(definition.name).definition.nics[0].mac!;
        expect(output).toContain(`STRATA-MAC ${mac}`);
        macs.add(mac);
        const ping = segment.inPeer(['busybox', 'ping', '-c', '3', '-w', '15', address]);
        expect(ping.code, `${ping.output}${segment.inPeer(['ip', 'neigh']).output}${output}`).toBe(0);
      }
      expect(macs.size).toBe(guests.length);
      for (const [definition] of guests) await daemon.vms.stop(definition.name, { force: true });
      // A bridge the helper does not allow: the start fails with QEMU's own words.
      await pool().createVolume('nicdenied0', 4 * MiB);
      await daemon.vms.create(withNic('nicdenied', 4, { mode: 'bridge', bridge: 'strata-denied' }));
      await expect(daemon.vms.start('nicdenied')).rejects.toThrow(/bridge helper failed/);
      expect(daemon.vms.get('nicdenied').state).toBe('stopped');
    } finally {
      segment.close();
    }
  });

  it.skipIf(!haveAgent)('snapshots a VM through its guest agent: the frozen file system hands over data the guest never synced, and the guest writes again after the thaw', async () => {
    const image = path.join(work, 'agent.raw');
    await runOk('mkfs.ext4', ['-q', '-F', image, '32M']);
    const volume = pool().openVolume((await pool().createVolume('agent0', 32 * MiB)).name);
    await volume.write(0, fs.readFileSync(image), { fua: true });
    await daemon.vms.create(guest('agentvm', ['agent0'], 'agent'));
    await daemon.vms.start('agentvm');
    await marker('agentvm', 'STRATA-TICK 1');
    const note = Buffer.from('STRATA-UNSYNCED-NOTE');
    // Written in the guest, not yet on its disk.
    const live = await volume.read(0, 32 * MiB);
    const seen = live.indexOf(note);
    // Where the note is when it is there: in a file's data block (the guest wrote it back)
    // or amid other bytes, and whether a second read agrees.
    const context = seen < 0 ? '' : `at ${seen}: ${JSON.stringify(live.subarray(Math.max(0, seen - 48), seen + 64).toString('latin1'))}; read again: ${(await volume.read(seen, note.length)).equals(note)}`;
    expect(seen, context).toBe(-1);
    const snapshot = await daemon.vms.snapshot('agentvm', 'frozen');
    expect(snapshot.method, daemon.vms.console('agentvm').recent().toString('utf8')).toBe('fsfreeze');
    expect((await pool().openSnapshot('agent0', 'frozen').read(0, 32 * MiB)).includes(note)).toBe(true);
    const ticks = [...daemon.vms.console('agentvm').recent().toString('utf8').matchAll(/STRATA-TICK (\d+)/g)].map((match) => Number(match[1]));
    await marker('agentvm', `STRATA-TICK ${Math.max(...ticks) + 2}`);
    await daemon.vms.stop('agentvm', { force: true });
  });

  it('attaches a cloud-init NoCloud seed the guest sees as a disk labelled cidata', async () => {
    await pool().createVolume('seed0', 4 * MiB);
    await daemon.vms.create({ ...guest('seeded', ['seed0'], 'cidata'), cloudInit: { userData: '#cloud-config\n# STRATA-USERDATA\n', sshKeys: ['ssh-ed25519 AAAA test'] } });
    await daemon.vms.start('seeded');
    const output = await marker('seeded', 'STRATA-READY');
    expect(output).toContain('STRATA-CIDATA label');
    expect(output).toContain('STRATA-CIDATA user-data');
    expect(output).toContain('STRATA-CIDATA meta-data');
    await daemon.vms.stop('seeded', { force: true });
  });

  it('changes a stopped VM through the API: the guest sees the new vCPUs and command line at the next start; a running VM, bad values and disks under VM snapshots are refused, nothing changed', async () => {
    const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
    const patch = (name: string, body: unknown) =>
      fetch(`http://127.0.0.1:${daemon.httpAddress!.port}/api/v1/vms/${name}`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as { code?: string; definition?: VmDefinition } }));
    await pool().createVolume('edit0', 8 * MiB);
    await pool().createVolume('edit1', 8 * MiB);
    const original = guest('editable', ['edit0']);
    await daemon.vms.create(original);
    const append = `${original.boot!.append} strata.edited=yes`;
    const changed = await patch('editable', { cpus: 2, memoryBytes: 160 * MiB, boot: { ...original.boot, append } });
    expect(changed.status).toBe(200);
    expect(changed.body.definition).toMatchObject({ cpus: 2, memoryBytes: 160 * MiB, disks: [{ volume: 'edit0' }], boot: { append } });
    await daemon.vms.start('editable');
    const output = await marker('editable', 'STRATA-READY');
    expect(output).toContain('STRATA-CPUS 2');
    expect(output).toContain('STRATA-EDITED');
    // Refused while running, and for bad values or an unknown field; nothing changes.
    expect((await patch('editable', { cpus: 1 })).body.code).toBe('STRATA_E_VM_STATE');
    await daemon.vms.stop('editable', { force: true });
    expect((await patch('editable', { cpus: 0 })).status).toBe(400);
    expect((await patch('editable', { name: 'renamed' })).status).toBe(400);
    expect((await patch('editable', {})).status).toBe(400);
    expect((await patch('editable', { disks: ['no-such-volume'] })).body.code).toBe('STRATA_E_VOLUME_NOT_FOUND');
    expect((await patch('editable', { disks: ['boot0'] })).body.code).toBe('STRATA_E_VOLUME_IN_USE');
    expect((await patch('editable', { memoryBytes: Math.ceil((os.totalmem() * 2) / MiB) * MiB })).body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    expect((await patch('no-such-vm', { cpus: 1 })).body.code).toBe('STRATA_E_VM_NOT_FOUND');
    // Disks change freely until the VM has a snapshot; then they are fixed, other fields not.
    expect((await patch('editable', { disks: ['edit1', 'edit0'] })).body.definition?.disks).toEqual([{ volume: 'edit1' }, { volume: 'edit0' }]);
    expect((await patch('editable', { disks: ['edit0'] })).status).toBe(200);
    await daemon.vms.snapshot('editable', 'before');
    expect((await patch('editable', { disks: ['edit1'] })).body.code).toBe('STRATA_E_VM_STATE');
    expect((await patch('editable', { boot: null, cpus: 1 })).body.definition).toMatchObject({ cpus: 1, boot: null, disks: [{ volume: 'edit0' }] });
    expect(daemon.vms.get('editable').definition).toMatchObject({ cpus: 1, memoryBytes: 160 * MiB, boot: null });
  });

  it('refuses bad definitions with clear errors and creates nothing', async () => {
    const before = daemon.vms.list().map((vm) => vm.name);
    await expect(daemon.vms.create(guest('nodisk', ['no-such-volume']))).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_NOT_FOUND' });
    await pool().createVolume('big0', MiB);
    await expect(daemon.vms.create({ ...guest('huge', ['big0']), memoryBytes: Math.ceil((os.totalmem() * 2) / MiB) * MiB })).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    await expect(daemon.vms.create(guest('boot', ['big0']))).rejects.toMatchObject({ code: 'STRATA_E_VM_EXISTS' });
    await expect(daemon.vms.create(guest('shared', ['boot0']))).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_IN_USE' });
    await expect(daemon.vms.create(guest('bad/name', ['big0']))).rejects.toMatchObject({ code: 'STRATA_E_INVALID_NAME' });
    expect(daemon.vms.list().map((vm) => vm.name)).toEqual(before);
  });
});

describe.skipIf(!haveVmTools)('a VM outliving its daemon', () => {
  it('keeps running when the daemon is killed; the restarted daemon reattaches and stops it cleanly', async () => {
    const dir = makeTempDir();
    const children: ChildProcess[] = [];
    const serve = async (): Promise<{ child: ChildProcess; url: string }> => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/run.ts'), 'serve', '--data', path.join(dir, 'data'), '--nbd', 'off', '--http', '127.0.0.1:0'], {
        cwd: repoRoot,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      let stderr = '';
      const port = await new Promise<number>((resolve, reject) => {
        child.stderr!.setEncoding('utf8').on('data', (text: string) => {
          stderr += text;
          const line = stderr.split('\n').find((candidate) => candidate.includes('"message":"ready"'));
          if (line) resolve((JSON.parse(line) as { http: { port: number } }).http.port);
        });
        child.once('close', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      return { child, url: `http://127.0.0.1:${port}` };
    };
    let qemuPid: number | null = null;
    try {
      fs.mkdirSync(path.join(dir, 'guest'));
      const guestInitrd = path.join(dir, 'guest', 'initrd.cpio');
      buildInitramfs(path.join(dir, 'guest'), kernel!.version, initScript, guestInitrd);
      initrd = guestInitrd;
      const first = await serve();
      const token = fs.readFileSync(path.join(dir, 'data', 'admin.token'), 'utf8').trim();
      const api = async (url: string, method: string, route: string, body?: unknown) => {
        const response = await fetch(`${url}${route}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await response.text();
        if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
        return route.endsWith('/log') ? text : (JSON.parse(text || 'null') as any); // eslint-disable-line @typescript-eslint/no-explicit-any
      };
      await api(first.url, 'POST', '/api/v1/volumes', { name: 'disk', sizeBytes: 8 * MiB });
      const definition = guest('survivor', ['disk']);
      await api(first.url, 'POST', '/api/v1/vms', { name: 'survivor', cpus: 1, memoryBytes: definition.memoryBytes, disks: ['disk'], nics: [], boot: definition.boot });
      qemuPid = (await api(first.url, 'POST', '/api/v1/vms/survivor/start')).pid as number;
      const waitLog = async (url: string, text: string) => {
        const deadline = Date.now() + bootTimeoutMs;
        while (!(await api(url, 'GET', '/api/v1/vms/survivor/console/log')).includes(text)) {
          if (Date.now() > deadline) throw new Error(`no ${text} on the console`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      };
      await waitLog(first.url, 'STRATA-READY');
      const killed = new Promise((resolve) => first.child.once('close', resolve));
      process.kill(first.child.pid!, 'SIGKILL');
      await killed;
      expect(running(qemuPid)).toBe(true);
      const second = await serve();
      const shown = await api(second.url, 'GET', '/api/v1/vms/survivor');
      expect(shown.state).toBe('running');
      expect(shown.pid).toBe(qemuPid);
      await waitLog(second.url, 'STRATA-READY');
      expect((await api(second.url, 'POST', '/api/v1/vms/survivor/stop', { force: true })).state).toBe('stopped');
      expect(running(qemuPid)).toBe(false);
      const events = (await api(second.url, 'GET', '/api/v1/events')) as { kind: string }[];
      expect(events.map((event) => event.kind)).toEqual(expect.arrayContaining(['vm.started', 'vm.reattached', 'vm.stopped']));
      const stopped = new Promise((resolve) => second.child.once('close', resolve));
      process.kill(second.child.pid!, 'SIGTERM');
      await stopped;
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      if (qemuPid !== null) {
        try {
          process.kill(qemuPid, 'SIGKILL');
        } catch {
          // Already stopped.
        }
      }
      removeTempDir(dir);
    }
  });
});
