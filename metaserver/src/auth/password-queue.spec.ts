import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RETRY_AFTER_HEADER } from "@satchel/proto";
import { PasswordQueue } from "./password-queue.js";

/** Work that ends when the test says so. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, work: async () => opened };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("the password queue", () => {
  it("runs at most `concurrency` at once, queues up to `maxQueued`, and refuses the next at once with a retry estimate", async () => {
    const q = new PasswordQueue(2, 3);
    const gates = Array.from({ length: 5 }, gate);
    let running = 0;
    let most = 0;
    // Five addresses, so that only the queue's total bounds them.
    const runs = gates.map((g, i) => q.run(`a${i}`, async () => {
      running++;
      most = Math.max(most, running);
      await g.work();
      running--;
    }));
    await tick();
    expect(running).toBe(2);
    expect(q.queued).toBe(3);
    const refused = await q.run("a9", async () => undefined).catch((e) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((refused as ConnectError).rawMessage).toMatch(/sign-in is busy: 3 sign-ins are waiting; retry in \d+ ms/);
    expect(Number((refused as ConnectError).metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(0);
    for (const g of gates) g.open();
    await Promise.all(runs);
    expect(most).toBe(2);
    expect(q.queued).toBe(0);
    // Free again: a new run starts at once.
    await expect(q.run("a0", async () => 7)).resolves.toBe(7);
  });

  it("takes turns by address: one caller from elsewhere waits for one hash, not behind a flood; a flooding address may queue only its share", async () => {
    const q = new PasswordQueue(1, 32);
    expect(q.perAddress).toBe(4);
    const order: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const call = (address: string, name: string) => {
      const g = gate();
      gates.set(name, g);
      return q.run(address, async () => {
        order.push(name);
        await g.work();
      });
    };
    const flood = [call("flooder", "f0"), ...[1, 2, 3, 4].map((i) => call("flooder", `f${i}`))];
    // The flooder's fifth waiting call is over its share.
    const over = await q.run("flooder", async () => undefined).catch((e) => ConnectError.from(e));
    expect((over as ConnectError).code).toBe(Code.ResourceExhausted);
    const user = call("user", "u");
    // Runs finish one by one: the user's turn comes right after the running hash.
    for (let i = 0; i < 6; i++) {
      await tick();
      gates.get(order.at(-1)!)!.open();
    }
    await Promise.all([...flood, user]);
    expect(order).toEqual(["f0", "f1", "u", "f2", "f3", "f4"]);
  });

  it("a failed run frees its slot for the next", async () => {
    const q = new PasswordQueue(1, 1);
    const g = gate();
    const first = q.run("a", async () => {
      await g.work();
      throw new Error("scrypt failed");
    });
    const second = q.run("b", async () => "ok");
    g.open();
    await expect(first).rejects.toThrow("scrypt failed");
    await expect(second).resolves.toBe("ok");
    await expect(q.run("a", async () => "again")).resolves.toBe("again");
  });
});
