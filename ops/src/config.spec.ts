import { describe, expect, it } from "vitest";
import { checkPortBase, loadClusterConfig, PORT_SPAN } from "./config.js";

describe("port bases", () => {
  it("a base whose ports reach the ephemeral range is refused with the base to choose instead", () => {
    const range: [number, number] = [32768, 60999];
    for (const base of [7300, 17300, 18300, 19300, 20300, 32768 - PORT_SPAN]) expect(checkPortBase(base, range)).toBe(base);
    for (const base of [47300, 32768 - PORT_SPAN + 1, 60999]) expect(() => checkPortBase(base, range)).toThrow(/ephemeral range 32768-60999.*below 32628/);
    expect(checkPortBase(61000, range)).toBe(61000);
    expect(checkPortBase(47300, null)).toBe(47300);
  });

  it("the cluster's configuration checks its base against this machine's range", () => {
    expect(loadClusterConfig({ SATCHEL_PORT_BASE: "17300" }).portBase).toBe(17300);
    expect(() => loadClusterConfig({ SATCHEL_PORT_BASE: "47300" })).toThrow(/SATCHEL_PORT_BASE 47300/);
  });
});
