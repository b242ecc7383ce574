import { describe, expect, it } from "vitest";
import { recheckMemberships } from "./context.js";
import { Fanout, Subscriber } from "./fanout/fanout.js";

describe("an ended membership", () => {
  it("takes the namespace from that user's subscribers only; nothing more of it is delivered", async () => {
    const fanout = new Fanout();
    const mine = [new Subscriber(new Set([1n, 2n]), "7"), new Subscriber(new Set([2n]), "7")];
    const theirs = new Subscriber(new Set([2n]), "8");
    for (const s of [...mine, theirs]) fanout.add(s);
    expect(fanout.revoke("7", 2n)).toBe(2);
    expect(fanout.publish(2n, 10n)).toBe(1);
    expect(fanout.publish(1n, 10n)).toBe(1);
    expect([...(await mine[0].take()).keys()]).toEqual([1n]);
    expect([...(await theirs.take()).keys()]).toEqual([2n]);
    expect(fanout.watchedBy("7")).toEqual(new Set([1n]));
  });

  it("an announcement lost, the periodic recheck finds it: each user's streams keep what the metaserver says they may watch", async () => {
    const fanout = new Fanout();
    fanout.add(new Subscriber(new Set([1n, 2n, 3n]), "7"));
    fanout.add(new Subscriber(new Set([5n]), "9"));
    fanout.add(new Subscriber(new Set([4n]), "service"));
    const asked: string[][] = [];
    const ended: [string, bigint][] = [];
    await recheckMemberships(fanout, {
      current: async (users) => {
        asked.push(users);
        return new Map([["7", new Set([1n, 3n])], ["9", new Set<bigint>()]]);
      },
    }, (user, ns) => {
      ended.push([user, ns]);
      fanout.revoke(user, ns);
    });
    expect(asked).toEqual([["7", "9"]]);
    expect(ended).toEqual([["7", 2n], ["9", 5n]]);
    expect(fanout.watchedBy("7")).toEqual(new Set([1n, 3n]));
    expect(fanout.watchedBy("service")).toEqual(new Set([4n]));
  });
});
