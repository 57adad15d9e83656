/*
 * The event log: what an operator should know happened (a volume created, a task failed,
 * a pool filling up, checksum errors). Events carry increasing ids, are kept in a
 * bounded ring and in DIR/events.jsonl (one JSON object per line, rewritten down to the
 * ring when it grows to twice its size), so they survive restarts. Subscribers (the SSE
 * stream) get each new event as it is recorded.
 */
import * as fs from 'node:fs';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';

export type EventSeverity = 'info' | 'warning' | 'error';

export interface StrataEvent {
  readonly id: number;
  readonly timeMs: number;
  readonly severity: EventSeverity;
  /** Dotted kind, e.g. volume.created, task.failed, pool.usage, pool.checksum-errors. */
  readonly kind: string;
  /** What the event is about: "pool/default", "volume/disk0", "task/12". */
  readonly subject: string;
  readonly message: string;
}

export type EventInput = Omit<StrataEvent, 'id' | 'timeMs'>;

export class EventLog {
  private readonly ring: StrataEvent[] = [];
  private readonly listeners = new Set<(event: StrataEvent) => void>();
  private nextId = 1;
  private fileLines = 0;

  constructor(
    private readonly file: string | null,
    private readonly logger: Logger,
  ) {
    if (file && fs.existsSync(file)) this.load(file);
  }

  private load(file: string): void {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
    for (const line of lines.slice(-limits.eventsKeptMax)) {
      try {
        this.ring.push(JSON.parse(line) as StrataEvent);
      } catch {
        // A torn last line (killed while appending) is skipped.
      }
    }
    this.fileLines = lines.length;
    this.nextId = (this.ring.at(-1)?.id ?? 0) + 1;
  }

  record(input: EventInput): StrataEvent {
    const event: StrataEvent = { id: this.nextId++, timeMs: Date.now(), ...input };
    this.ring.push(event);
    if (this.ring.length > limits.eventsKeptMax) this.ring.shift();
    this.persist(event);
    this.logger.log(input.severity === 'info' ? 'info' : input.severity === 'warning' ? 'warn' : 'error', 'event', { ...event });
    for (const listener of this.listeners) listener(event);
    return event;
  }

  private persist(event: StrataEvent): void {
    if (!this.file) return;
    try {
      if (this.fileLines >= 2 * limits.eventsKeptMax) {
        fs.writeFileSync(this.file, this.ring.map((kept) => `${JSON.stringify(kept)}\n`).join(''));
        this.fileLines = this.ring.length;
        return;
      }
      fs.appendFileSync(this.file, `${JSON.stringify(event)}\n`);
      this.fileLines += 1;
    } catch (error) {
      // Events are advisory: a full disk must not fail the operation that raised one.
      this.logger.log('warn', 'could not persist an event', { error: (error as Error).message });
    }
  }

  /** Events with id greater than `afterId`, oldest first, at most `limit`. */
  list(afterId = 0, limit = limits.eventsKeptMax): StrataEvent[] {
    return this.ring.filter((event) => event.id > afterId).slice(-limit);
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  subscribe(listener: (event: StrataEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
