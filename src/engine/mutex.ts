/*
 * A FIFO async mutex. The pool has one writer lock: destage, compaction and every
 * admin operation that changes metadata run under it, so each can read, decide and
 * commit without the state moving beneath it. Reads never take it.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = false;

  get locked(): boolean {
    return this.held;
  }

  async run<T>(body: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    this.held = true;
    try {
      return await body();
    } finally {
      this.held = false;
      release();
    }
  }
}
