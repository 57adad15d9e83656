/*
 * A private layer-2 segment for NIC tests: a Linux bridge with no address, a veth pair
 * whose far end sits in a network namespace of the test's own (the segment's only
 * address on the host side), and tap devices enslaved to the bridge for VMs. Nothing
 * routes off the segment, and close() deletes all of it. Needs root, iproute2 and
 * /dev/net/tun; the bridge NIC mode also needs QEMU's bridge helper to allow the bridge
 * in /etc/qemu/bridge.conf (.ci/run writes that line).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { hasTool } from './tools.js';

/** Fixed, so /etc/qemu/bridge.conf can allow it by name. */
export const segmentBridge = 'strata-test0';
export const segmentPrefix = '10.231.77';
/** The namespace end of the veth pair. */
export const segmentPeer = `${segmentPrefix}.1`;

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${result.stderr}`);
}

function skip(message: string): false {
  if (process.env.STRATA_REQUIRE_TOOLS === '1') throw new Error(`${message}; STRATA_REQUIRE_TOOLS=1 forbids skipping`);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

/** True when this process may build the segment (root, ip, /dev/net/tun); says loudly why not otherwise. */
export function haveSegmentSetup(): boolean {
  if (process.getuid?.() !== 0) return skip('NIC tests need root (tap devices, bridges, namespaces)');
  if (!hasTool('ip', 'iproute2')) return false;
  if (!fs.existsSync('/dev/net/tun')) return skip('NIC tests need /dev/net/tun');
  return true;
}

/** True when QEMU's bridge helper may attach to the segment's bridge. */
export function bridgeHelperAllowed(): boolean {
  const conf = fs.existsSync('/etc/qemu/bridge.conf') ? fs.readFileSync('/etc/qemu/bridge.conf', 'utf8') : '';
  const allowed = conf.split('\n').some((line) => ['allow all', `allow ${segmentBridge}`].includes(line.trim()));
  return allowed || skip(`bridge NIC test: /etc/qemu/bridge.conf does not say "allow ${segmentBridge}"`);
}

export interface Segment {
  /** A new tap device on the bridge, for a VM's `tap:NAME` NIC. */
  newTap(): string;
  /** Runs a command in the peer's namespace: its exit code and output. */
  inPeer(command: readonly string[]): { code: number | null; output: string };
  close(): void;
}

/** What a test run killed before its close() left: the bridge, namespaces, taps and veths by their prefixes. */
function removeLeftovers(): void {
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  for (const match of links.matchAll(/^\d+: (st[tv]\d+(?:-\d+)?|strata-test0)[@:]/gm)) spawnSync('ip', ['link', 'del', match[1]], { stdio: 'ignore' });
  const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  for (const match of namespaces.matchAll(/^(strata-test-\d+)/gm)) spawnSync('ip', ['netns', 'del', match[1]], { stdio: 'ignore' });
}

export function createSegment(): Segment {
  const tag = String(process.pid % 100000);
  const namespace = `strata-test-${tag}`;
  const veth = `stv${tag}`;
  const taps: string[] = [];
  const close = (): void => {
    for (const name of [...taps, veth, segmentBridge]) spawnSync('ip', ['link', 'del', name], { stdio: 'ignore' });
    spawnSync('ip', ['netns', 'del', namespace], { stdio: 'ignore' });
  };
  removeLeftovers();
  try {
    ip('netns', 'add', namespace);
    ip('link', 'add', segmentBridge, 'type', 'bridge');
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', `${veth}p`, 'netns', namespace);
    ip('link', 'set', veth, 'master', segmentBridge);
    ip('link', 'set', veth, 'up');
    ip('link', 'set', segmentBridge, 'up');
    ip('-n', namespace, 'addr', 'add', `${segmentPeer}/24`, 'dev', `${veth}p`);
    ip('-n', namespace, 'link', 'set', `${veth}p`, 'up');
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
  } catch (error) {
    close();
    throw error;
  }
  return {
    newTap() {
      const name = `stt${tag}-${taps.length}`;
      taps.push(name);
      ip('tuntap', 'add', 'dev', name, 'mode', 'tap');
      ip('link', 'set', name, 'master', segmentBridge);
      ip('link', 'set', name, 'up');
      return name;
    },
    inPeer(command) {
      const result = spawnSync('ip', ['netns', 'exec', namespace, ...command], { encoding: 'utf8', timeout: 30_000 });
      return { code: result.status, output: `${result.stdout}${result.stderr}` };
    },
    close,
  };
}
