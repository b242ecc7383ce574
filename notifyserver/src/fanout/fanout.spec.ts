import { describe, expect, it } from "vitest";
import { Fanout, Subscriber } from "./fanout.js";

describe("fan-out", () => {
  it("coalesces a slow consumer to the latest cursor per namespace", async () => {
    const fanout = new Fanout();
    const sub = new Subscriber(new Set([1n, 2n]));
    fanout.add(sub);
    for (let c = 1n; c <= 1000n; c++) fanout.publish(1n, c);
    fanout.publish(2n, 7n);
    fanout.publish(3n, 9n);
    const got = await sub.take();
    expect([...got].map(([ns, p]) => [ns, p.cursor])).toEqual([[1n, 1000n], [2n, 7n]]);
    expect(sub.coalesced).toBe(999);
  });

  it("makes one message per advance, shared by every subscriber; a slow one holds the latest", async () => {
    let made = 0;
    const fanout = new Fanout((ns, cursor) => ({ ns, cursor, n: ++made }));
    const subs = Array.from({ length: 100 }, () => new Subscriber<{ ns: bigint; cursor: bigint; n: number }>(new Set([1n])));
    for (const sub of subs) fanout.add(sub);
    fanout.publish(1n, 10n);
    const first = await Promise.all(subs.map((s) => s.take()));
    expect(made).toBe(1);
    expect(new Set(first.map((m) => m.get(1n)!.message)).size).toBe(1);
    fanout.publish(1n, 11n);
    fanout.publish(1n, 12n);
    const slow = await subs[0].take();
    expect(slow.get(1n)).toMatchObject({ cursor: 12n, message: { cursor: 12n, n: 3 } });
  });

  it("wakes a waiting subscriber as soon as its namespace advances", async () => {
    const fanout = new Fanout();
    const sub = new Subscriber(new Set([5n]));
    fanout.add(sub);
    const started = Date.now();
    setTimeout(() => fanout.publish(5n, 42n), 20);
    const got = await sub.take();
    expect(got.get(5n)?.cursor).toBe(42n);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("forgets removed subscribers", () => {
    const fanout = new Fanout();
    const sub = new Subscriber(new Set([1n]));
    fanout.add(sub);
    fanout.remove(sub);
    expect(fanout.publish(1n, 1n)).toBe(0);
    expect(fanout.subscriberCount).toBe(0);
  });
});

describe("cursor order", () => {
  it("a stream never sees a namespace's cursor go back, also when advances arrive out of order", async () => {
    const fanout = new Fanout();
    const sub = new Subscriber(new Set([1n]));
    fanout.add(sub);
    sub.known(1n, 5n);
    fanout.publish(1n, 4n);
    setTimeout(() => sub.nudge(), 10);
    expect((await sub.take()).size).toBe(0);
    fanout.publish(1n, 1002n);
    expect((await sub.take()).get(1n)?.cursor).toBe(1002n);
    fanout.publish(1n, 1001n);
    fanout.publish(1n, 1003n);
    expect([...(await sub.take()).values()].map((p) => p.cursor)).toEqual([1003n]);
  });
});
