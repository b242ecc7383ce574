import { Code, ConnectError } from "@connectrpc/connect";
import type { BatchChange, BatchResult } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";

/** Sends one batch of changes (CommitBatch) and answers a result per change, in order. */
export type SendBatch = (changes: BatchChange["change"][]) => Promise<BatchResult[]>;

export interface CommitQueueOptions {
  /** Changes per CommitBatch at most (the server takes up to 1,000). */
  maxBatch?: number;
  /** Batches in flight at once. */
  maxInFlight?: number;
}

interface Waiting {
  change: BatchChange["change"];
  resolve: (r: BatchResult["result"]) => void;
  reject: (err: unknown) => void;
}

/**
 * Joins changes made at about the same time into CommitBatch calls, as a database's group commit
 * does: the first change waits only for the current turn of the event loop; changes that arrive
 * while batches are in flight go together in the next one. Each caller gets its own change's
 * result, or its own error (a change the server refused, or the whole call's failure: a refused
 * change was not written, and a commit retried with the same request id answers the same).
 */
export class CommitQueue {
  private waiting: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(private readonly send: SendBatch, opts: CommitQueueOptions = {}) {
    this.maxBatch = opts.maxBatch ?? 100;
    this.maxInFlight = opts.maxInFlight ?? 2;
  }

  /** Queues one change; resolves with its result (its single call's response). */
  submit(change: BatchChange["change"]): Promise<BatchResult["result"]> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ change, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.waiting.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.inFlight++;
      this.send(batch.map((w) => w.change))
        .then((results) => {
          if (results.length !== batch.length) throw new ConnectError(`CommitBatch answered ${results.length} results for ${batch.length} changes`, Code.Internal);
          batch.forEach((w, i) => {
            const r = results[i];
            if (r.code !== 0) w.reject(new ConnectError(r.message, r.code as Code));
            else w.resolve(r.result);
          });
        })
        .catch((err: unknown) => batch.forEach((w) => w.reject(err)))
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}
