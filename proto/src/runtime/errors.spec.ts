import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { dataLoss, statusMapping, toStatus } from "./errors.js";

const backends = { unreachable: "a metadata shard", contended: "the namespace" };
const hctx = { values: createContextValues() } as unknown as HandlerContext;

describe("one error vocabulary", () => {
  it("keeps statuses as they are", () => {
    const e = dataLoss("block abc cannot be read");
    expect(toStatus(e, "GetBlock", backends)).toBe(e);
  });

  it("maps a backend that does not answer to UNAVAILABLE (retry later), naming it", () => {
    for (const code of ["ECONNREFUSED", "ETIMEDOUT", "PROTOCOL_CONNECTION_LOST", "ECONNRESET"]) {
      const s = toStatus(Object.assign(new Error("x"), { code }), "CommitFile", backends);
      expect(s.code).toBe(Code.Unavailable);
      expect(s.rawMessage).toBe(`CommitFile: a metadata shard is unreachable (${code}); retry later`);
    }
    const redis = Object.assign(new Error("Reached the max retries per request limit"), { name: "MaxRetriesPerRequestError" });
    expect(toStatus(redis, "Subscribe", backends).code).toBe(Code.Unavailable);
  });

  it("maps a lost transaction race to ABORTED and anything else to INTERNAL with its message", () => {
    expect(toStatus(Object.assign(new Error("deadlock"), { code: "ER_LOCK_DEADLOCK" }), "Move", backends).code).toBe(Code.Aborted);
    const s = toStatus(new TypeError("boom"), "Move", backends);
    expect(s.code).toBe(Code.Internal);
    expect(s.rawMessage).toBe("Move: boom");
    expect(toStatus("a string", "Move", backends).rawMessage).toBe("Move: a string");
  });

  it("wraps unary and streaming handlers so that what they throw leaves as a status", async () => {
    const { guarded, guardedStream } = statusMapping(backends);
    const unary = guarded("ListFolder", async () => {
      throw Object.assign(new Error("refused"), { code: "ECONNREFUSED" });
    });
    await expect(unary({}, hctx)).rejects.toMatchObject({ code: Code.Unavailable });
    expect(await guarded("Ok", async (req: number) => req + 1)(1, hctx)).toBe(2);

    const stream = guardedStream("Subscribe", async function* () {
      yield 1;
      throw new Error("lost");
    });
    const got: number[] = [];
    await expect((async () => {
      for await (const n of stream({}, hctx)) got.push(n);
    })()).rejects.toBeInstanceOf(ConnectError);
    expect(got).toEqual([1]);
  });
});
