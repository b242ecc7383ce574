import { Code, ConnectError } from "@connectrpc/connect";
import { RETRY_AFTER_HEADER } from "@satchel/proto";

/**
 * Password hashing behind a bounded, fair queue. scrypt takes ~100 ms and 32 MiB per run on Node's
 * thread pool (4 threads by default, shared with file I/O): a flood of sign-ins would fill the
 * pool, stall everyone's sign-in behind it and grow memory with every waiting call. Here at most
 * `concurrency` hashes run at once; callers wait per client address and take turns address by
 * address, so a sign-in from elsewhere waits for about one hash per busy address, not behind a
 * flood; an address may have maxQueued/8 calls waiting (at least 1), and all addresses maxQueued.
 * Past either, RESOURCE_EXHAUSTED at once, with an estimate of the wait in its retry-after-ms
 * trailer. Pure (no I/O of its own).
 */
export class PasswordQueue {
  private active = 0;
  /** Waiting calls per address, addresses in turn order (the next to be served first). */
  private readonly waiting = new Map<string, (() => void)[]>();
  private count = 0;
  readonly perAddress: number;
  /** A moving average of how long one hash takes, for the retry estimate. */
  private averageMs = 100;

  constructor(readonly concurrency: number, readonly maxQueued: number, private readonly now: () => number = () => performance.now()) {
    if (!(concurrency >= 1) || !(maxQueued >= 0)) throw new Error(`a password queue needs concurrency >= 1 and maxQueued >= 0, got ${concurrency} and ${maxQueued}`);
    this.perAddress = Math.max(1, Math.ceil(maxQueued / 8));
  }

  /** Calls waiting for a turn. */
  get queued(): number {
    return this.count;
  }

  /** Runs `work` for a caller at `address` when its turn comes, or throws RESOURCE_EXHAUSTED at once when too many wait. */
  async run<T>(address: string, work: () => Promise<T>): Promise<T> {
    if (this.active < this.concurrency) this.active++;
    else {
      const mine = this.waiting.get(address) ?? [];
      if (this.count >= this.maxQueued || mine.length >= this.perAddress) throw this.busy(mine.length >= this.perAddress ? mine.length : this.count);
      // A slot handed over by a finished run (active stays as it is).
      await new Promise<void>((resolve) => {
        mine.push(resolve);
        this.waiting.set(address, mine);
        this.count++;
      });
    }
    const started = this.now();
    try {
      return await work();
    } finally {
      this.averageMs = 0.8 * this.averageMs + 0.2 * (this.now() - started);
      const next = this.takeTurn();
      if (next) next();
      else this.active--;
    }
  }

  /** The first caller of the address whose turn it is; that address goes to the back of the line. */
  private takeTurn(): (() => void) | undefined {
    const first = this.waiting.entries().next();
    if (first.done) return undefined;
    const [address, calls] = first.value;
    const next = calls.shift()!;
    this.waiting.delete(address);
    if (calls.length > 0) this.waiting.set(address, calls);
    this.count--;
    return next;
  }

  private busy(ahead: number): ConnectError {
    const waitMs = Math.ceil(((ahead + this.concurrency) / this.concurrency) * this.averageMs);
    const err = new ConnectError(`sign-in is busy: ${ahead} sign-ins are waiting; retry in ${waitMs} ms`, Code.ResourceExhausted);
    err.metadata.set(RETRY_AFTER_HEADER, String(waitMs));
    return err;
  }
}
