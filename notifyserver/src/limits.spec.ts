import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ConnectionLimits } from "./limits.js";

const code = (fn: () => unknown) => {
  try {
    fn();
    return Code[0];
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
};

describe("connection limits", () => {
  it("refuse a user over their limit and the server over its own, and take back released slots once", () => {
    const limits = new ConnectionLimits(2, 3);
    const a1 = limits.acquire("a");
    limits.acquire("a");
    expect(code(() => limits.acquire("a"))).toBe("ResourceExhausted");
    const b1 = limits.acquire("b");
    expect(code(() => limits.acquire("c"))).toBe("ResourceExhausted");
    a1();
    a1();
    expect(limits.open).toBe(2);
    limits.acquire("c");
    b1();
    expect(limits.open).toBe(2);
  });
});
