import { resourceExhausted } from "./errors.js";

/** Open streams and long polls, per user and in all; a caller over either limit is refused. */
export class ConnectionLimits {
  private readonly perUser = new Map<string, number>();
  private total = 0;

  constructor(private readonly maxPerUser: number, private readonly maxTotal: number) {}

  get open(): number {
    return this.total;
  }

  /**
   * Takes a slot for the caller, or throws RESOURCE_EXHAUSTED; the returned function gives it back.
   * Satchel services (a gateway holding streams for many devices) have no per-user limit.
   */
  acquire(userId: string, perUser = true): () => void {
    if (this.total >= this.maxTotal) {
      throw resourceExhausted(`this notification server holds its limit of ${this.maxTotal} connections: retry with back-off, or on another server`);
    }
    const mine = this.perUser.get(userId) ?? 0;
    if (perUser && mine >= this.maxPerUser) {
      throw resourceExhausted(`you already hold ${mine} notification connections here (limit ${this.maxPerUser}): close one, or watch several namespaces on one stream`);
    }
    this.perUser.set(userId, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.perUser.get(userId) ?? 1) - 1;
      if (n <= 0) this.perUser.delete(userId);
      else this.perUser.set(userId, n);
    };
  }
}
