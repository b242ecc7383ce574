import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { codeName, failureCause, failureScope, isDue, PROBLEM_RETRY, recordFailure, retryDelayMs } from "./problems.js";

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe("problem retry schedule", () => {
  it("waits 5 s after the first failure and doubles after each further one, never beyond 10 min", () => {
    const delays = Array.from({ length: 12 }, (_, i) => retryDelayMs(i + 1));
    expect(delays).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000, 600_000, 600_000, 600_000]);
    expect(PROBLEM_RETRY).toEqual({ firstDelayMs: 5_000, maxDelayMs: 600_000 });
  });

  it("stays at the cap however many attempts, without overflowing", () => {
    expect(retryDelayMs(10_000)).toBe(600_000);
    expect(retryDelayMs(Number.MAX_SAFE_INTEGER)).toBe(600_000);
  });

  it("follows a policy given instead of the default", () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, { firstDelayMs: 100, maxDelayMs: 300 }))).toEqual([100, 200, 300, 300]);
  });

  it("counts consecutive failures of one file, keeping when it first failed", () => {
    const t0 = 1_700_000_000_000;
    const first = recordFailure(undefined, { direction: "download", code: "data_loss", message: "block cannot be read", revision: "7" }, t0);
    expect(first).toEqual({
      direction: "download", code: "data_loss", message: "block cannot be read", revision: "7",
      attempts: 1, firstFailedAt: t0, lastFailedAt: t0, nextRetryAt: t0 + 5_000,
    });
    expect(isDue(first, t0 + 4_999)).toBe(false);
    expect(isDue(first, t0 + 5_000)).toBe(true);
    const second = recordFailure(first, { direction: "download", code: "data_loss", message: "still", revision: "8" }, t0 + 6_000);
    expect(second).toMatchObject({ attempts: 2, firstFailedAt: t0, lastFailedAt: t0 + 6_000, nextRetryAt: t0 + 16_000, revision: "8", message: "still" });
  });

  it("starts over when the same path fails the other way", () => {
    const down = recordFailure(undefined, { direction: "download", code: "data_loss", message: "x" }, 1_000);
    const again = recordFailure(down, { direction: "download", code: "data_loss", message: "x" }, 2_000);
    const up = recordFailure(again, { direction: "upload", code: "resource_exhausted", message: "over quota", local: { size: 3, mtimeMs: 4 } }, 3_000);
    expect(up).toMatchObject({ direction: "upload", attempts: 1, firstFailedAt: 3_000, nextRetryAt: 8_000, local: { size: 3, mtimeMs: 4 } });
  });
});

describe("why a file failed", () => {
  it("names gRPC codes as they are on the wire", () => {
    expect([Code.DataLoss, Code.Unavailable, Code.ResourceExhausted, Code.PermissionDenied, Code.Canceled].map(codeName))
      .toEqual(["data_loss", "unavailable", "resource_exhausted", "permission_denied", "canceled"]);
  });

  it("keeps a service's code and message, and maps local I/O errors to a code", () => {
    expect(failureCause(new ConnectError("block ab cannot be read: 2 of 6 shards", Code.DataLoss)))
      .toEqual({ code: "data_loss", message: "block ab cannot be read: 2 of 6 shards" });
    expect(failureCause(errno("ENOENT", "ENOENT: no such file or directory, stat '/x/a.txt'")))
      .toEqual({ code: "not_found", message: "local file: ENOENT: no such file or directory, stat '/x/a.txt'" });
    expect(failureCause(errno("EIO", "EIO: i/o error, read")).code).toBe("data_loss");
    expect(failureCause(new Error("something odd"))).toEqual({ code: "unknown", message: "something odd" });
  });

  it("fails the pass on credentials, checks the services on outage-like codes, and pins the rest on the file", () => {
    expect(failureScope(new ConnectError("token expired", Code.Unauthenticated))).toBe("pass");
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown]) {
      expect(failureScope(new ConnectError("x", code)), Code[code]).toBe("check-services");
    }
    for (const code of [Code.DataLoss, Code.NotFound, Code.ResourceExhausted, Code.PermissionDenied, Code.InvalidArgument, Code.Aborted]) {
      expect(failureScope(new ConnectError("x", code)), Code[code]).toBe("file");
    }
    expect(failureScope(errno("ENOENT", "gone"))).toBe("file");
    expect(failureScope(errno("ECONNREFUSED", "connect ECONNREFUSED"))).toBe("check-services");
  });
});
