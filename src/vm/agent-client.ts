/*
 * A client of the QEMU guest agent, over the VM's virtio-serial chardev socket. The
 * protocol is QMP-like JSON lines, without greeting or ids: a command's reply is the next
 * reply line. The chardev may hold stale bytes from an earlier client, so every session
 * starts with a 0xFF byte (resetting the agent's parser, which answers it with a parse
 * error) and guest-sync-delimited with a random id: the agent answers with 0xFF then the
 * id, and everything before it, errors included, is discarded. No answer within the
 * timeout means no agent runs in the guest (STRATA_E_GUEST_AGENT), which VM snapshots
 * take as the cue to pause instead of freezing.
 */
import { randomInt } from 'node:crypto';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { connectUnix, JsonLineSocket } from './json-lines.js';

export class GuestAgent {
  private lines!: JsonLineSocket;
  private waiting: { resolve(value: Record<string, unknown>): void; reject(error: Error): void } | null = null;
  private closedError: StrataError | null = null;
  /** Before the sync answer: error replies are the agent's words about stale bytes, not answers. */
  private syncing = true;

  private constructor(private readonly timeoutMs: number) {}

  static async connect(socketPath: string, options: { timeoutMs?: number } = {}): Promise<GuestAgent> {
    const timeoutMs = options.timeoutMs ?? limits.guestAgentTimeoutMs;
    const socket = await connectUnix(socketPath, timeoutMs, 'STRATA_E_GUEST_AGENT', 'the guest agent channel');
    const agent = new GuestAgent(timeoutMs);
    agent.lines = new JsonLineSocket(socket, { message: (value) => agent.message(value), closed: (error) => agent.end(error) }, 'guest agent');
    try {
      const id = randomInt(1, 2 ** 31);
      socket.write(Buffer.from([0xff]));
      let answer: unknown;
      do answer = await agent.run('guest-sync-delimited', { id });
      while (answer !== id);
      agent.syncing = false;
      return agent;
    } catch (error) {
      agent.close();
      throw error;
    }
  }

  private message(value: Record<string, unknown>): void {
    const waiting = this.waiting;
    if (!waiting || (this.syncing && 'error' in value)) return;
    this.waiting = null;
    if ('error' in value) {
      const error = value.error as { class?: string; desc?: string };
      waiting.reject(new StrataError('STRATA_E_GUEST_AGENT', `the guest agent refused: ${error.desc ?? 'unknown error'}`, { class: error.class }));
    } else {
      waiting.resolve(value);
    }
  }

  private end(error: StrataError | null): void {
    this.closedError = new StrataError('STRATA_E_GUEST_AGENT', `the guest agent connection closed${error ? `: ${error.message}` : ''}`);
    this.waiting?.reject(this.closedError);
    this.waiting = null;
  }

  private async run(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) throw this.closedError;
    if (this.waiting) throw new StrataError('STRATA_E_GUEST_AGENT', 'one guest agent command at a time');
    const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new StrataError('STRATA_E_GUEST_AGENT', `the guest agent did not answer ${command} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting = {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.lines.send(args === undefined ? { execute: command } : { execute: command, arguments: args });
    });
    return reply.return;
  }

  async ping(): Promise<void> {
    await this.run('guest-ping');
  }

  async fsfreezeFreeze(): Promise<number> {
    return Number(await this.run('guest-fsfreeze-freeze'));
  }

  async fsfreezeThaw(): Promise<number> {
    return Number(await this.run('guest-fsfreeze-thaw'));
  }

  async fsfreezeStatus(): Promise<'thawed' | 'frozen'> {
    return (await this.run('guest-fsfreeze-status')) as 'thawed' | 'frozen';
  }

  close(): void {
    this.lines?.close();
  }
}
