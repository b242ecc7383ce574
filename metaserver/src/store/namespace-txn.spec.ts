import { describe, expect, it } from "vitest";
import { NamespaceTxn, TxnSession } from "./namespace-txn.js";
import type { PoolConnection } from "./shards.js";

/**
 * What a transaction sends and when (the statements themselves run against MariaDB in the
 * integration tests: batch.it.spec.ts rolls a savepoint back on a real shard).
 */
function recording() {
  const sent: string[] = [];
  const conn = {
    query: async (sql: string) => {
      sent.push(sql);
      return [[], []];
    },
  } as unknown as PoolConnection;
  return { sent, txn: new NamespaceTxn(new TxnSession(conn), 7n, 100n, 5000n, 0n) };
}

describe("NamespaceTxn savepoints", () => {
  it("a change refused before anything of it was sent is dropped from the queue: no round trip, cursor and usage as they were", async () => {
    const { sent, txn } = recording();
    txn.write("INSERT first", []);
    const mark = txn.mark();
    txn.next();
    txn.usedBytes += 10n;
    txn.write("INSERT refused", []);
    await txn.rollbackTo(mark);
    expect([txn.cursor, txn.usedBytes]).toEqual([100n, 5000n]);
    expect(sent).toEqual([]);
    txn.write("COMMIT", []);
    await txn.flush();
    expect(sent).toEqual(["INSERT first;\nCOMMIT"]);
  });

  it("a change refused after its writes were sent is rolled back to its savepoint on the server", async () => {
    const { sent, txn } = recording();
    txn.write("INSERT first", []);
    const mark = txn.mark();
    txn.next();
    txn.write("INSERT refused", []);
    await txn.query("SELECT probe", []);
    await txn.rollbackTo(mark);
    expect(txn.cursor).toBe(100n);
    expect(sent).toEqual(["INSERT first;\nSAVEPOINT change_1;\nINSERT refused", "SELECT probe", "ROLLBACK TO SAVEPOINT change_1"]);
    // The next change takes a savepoint of its own, and the refused writes are not sent again.
    const next = txn.mark();
    txn.write("INSERT later", []);
    await txn.flush();
    expect(next.name).toBe("change_2");
    expect(sent.at(-1)).toBe("SAVEPOINT change_2;\nINSERT later");
  });

  it("rows read before a refused change are read again after it (the rollback may have undone what they showed)", async () => {
    const { sent, txn } = recording();
    txn.absorb(["/a"], []);
    expect(await txn.row("/a")).toBeUndefined();
    expect(sent).toEqual([]);
    const mark = txn.mark();
    await txn.rollbackTo(mark);
    await txn.row("/a");
    expect(sent.at(-1)).toMatch(/^SELECT .* FROM files WHERE namespace_id = \? AND path_key = \?$/);
  });
});
