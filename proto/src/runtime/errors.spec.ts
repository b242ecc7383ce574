import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { dataLoss, statusMapping, toStatus } from "./errors.js";
import { requestIdKey } from "./interceptors.js";

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

  it("maps a lost transaction race to ABORTED and anything else to INTERNAL with the request id, never the library's message", () => {
    expect(toStatus(Object.assign(new Error("deadlock"), { code: "ER_LOCK_DEADLOCK" }), "Move", backends).code).toBe(Code.Aborted);
    const sql = Object.assign(new Error("You have an error in your SQL syntax near 'SELECT * FROM files WHERE'"), { code: "ER_PARSE_ERROR" });
    const s = toStatus(sql, "Move", backends, "req-42");
    expect(s.code).toBe(Code.Internal);
    expect(s.rawMessage).toBe("Move failed with an internal error (request req-42); the server's log has the detail");
    expect(s.rawMessage).not.toMatch(/SQL|SELECT|files/);
    // The detail stays with the status for the server's log line.
    expect((s.cause as Error).message).toMatch(/SQL syntax/);
    expect(toStatus("a string", "Move", backends).rawMessage).toBe("Move failed with an internal error; the server's log has the detail");
  });

  it("a handler's INTERNAL names the call's request id", async () => {
    const { guarded } = statusMapping(backends);
    const values = createContextValues().set(requestIdKey, "r-7");
    const failing = guarded("CommitFile", async () => {
      throw new Error("ER_BAD_FIELD_ERROR: Unknown column 'blokcs' in 'field list'");
    });
    const err = await failing({}, { values } as unknown as HandlerContext).catch((e: ConnectError) => e);
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("CommitFile failed with an internal error (request r-7); the server's log has the detail");
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
