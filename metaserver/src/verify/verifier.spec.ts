import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { inspectAgain } from "./verifier.js";

/** A call that fails with each code given, in turn, then answers "ok"; counts its tries. */
function failing(...codes: Code[]) {
  const calls = { n: 0 };
  const call = async () => {
    const code = codes[calls.n++];
    if (code !== undefined) throw new ConnectError("no", code);
    return "ok";
  };
  return { call, calls };
}

describe("an InspectBlocks batch the blockserver could not answer", () => {
  it("is tried again after UNAVAILABLE (a restart, a recycled connection) and its answer used", async () => {
    const { call, calls } = failing(Code.Unavailable, Code.Unavailable);
    expect(await inspectAgain(call)).toBe("ok");
    expect(calls.n).toBe(3);
  });

  it("gives up after three tries with the blockserver's status", async () => {
    const { call, calls } = failing(Code.Unavailable, Code.Unavailable, Code.Unavailable, Code.Unavailable);
    await expect(inspectAgain(call)).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls.n).toBe(3);
  });

  it("is not tried again for any other status, nor once the verify was cancelled", async () => {
    const denied = failing(Code.PermissionDenied);
    await expect(inspectAgain(denied.call)).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(denied.calls.n).toBe(1);
    const cancelled = failing(Code.Unavailable);
    const abort = new AbortController();
    abort.abort();
    await expect(inspectAgain(cancelled.call, abort.signal)).rejects.toMatchObject({ code: Code.Unavailable });
    expect(cancelled.calls.n).toBe(1);
  });
});
