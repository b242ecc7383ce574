import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BatchResultSchema, type BatchChange, type BatchResult } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { CommitQueue } from "./commit-queue.js";

const folder = (path: string): BatchChange["change"] => ({ case: "createFolder", value: { $typeName: "satchel.meta.v1.CreateFolderRequest", path } });
const pathOf = (c: BatchChange["change"]) => (c.case === "createFolder" ? c.value.path : "?");
const made = (path: string): BatchResult => create(BatchResultSchema, { result: { case: "createFolder", value: { folder: { path } } } });

/** A server stand-in that records each batch and answers when released. */
function recordingServer(answer: (path: string) => BatchResult = made) {
  const batches: string[][] = [];
  const release: (() => void)[] = [];
  const send = (changes: BatchChange["change"][]) => {
    batches.push(changes.map(pathOf));
    return new Promise<BatchResult[]>((resolve) => release.push(() => resolve(changes.map((c) => answer(pathOf(c))))));
  };
  return { batches, release, send };
}
/** Lets queued promise callbacks and the queue's next turn run. */
const turn = async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

describe("CommitQueue", () => {
  it("changes made in one turn go in one batch; those made while it is out go in the next", async () => {
    const server = recordingServer();
    const queue = new CommitQueue(server.send, { maxInFlight: 1 });
    const first = ["/a", "/b", "/c"].map((p) => queue.submit(folder(p)));
    await turn();
    expect(server.batches).toEqual([["/a", "/b", "/c"]]);
    const second = ["/d", "/e"].map((p) => queue.submit(folder(p)));
    await turn();
    expect(server.batches).toHaveLength(1);
    server.release.shift()!();
    const results = await Promise.all(first);
    expect(results.map((r) => (r.case === "createFolder" ? r.value.folder?.path : undefined))).toEqual(["/a", "/b", "/c"]);
    await turn();
    expect(server.batches).toEqual([["/a", "/b", "/c"], ["/d", "/e"]]);
    server.release.shift()!();
    await Promise.all(second);
  });

  it("splits at maxBatch and keeps at most maxInFlight batches out", async () => {
    const server = recordingServer();
    const queue = new CommitQueue(server.send, { maxBatch: 2, maxInFlight: 2 });
    const all = Array.from({ length: 5 }, (_, i) => queue.submit(folder(`/${i}`)));
    await turn();
    expect(server.batches).toEqual([["/0", "/1"], ["/2", "/3"]]);
    server.release.shift()!();
    await turn();
    expect(server.batches).toEqual([["/0", "/1"], ["/2", "/3"], ["/4"]]);
    server.release.splice(0).forEach((r) => r());
    await Promise.all(all);
  });

  it("a refused change fails only its own caller, with the server's status", async () => {
    const server = recordingServer((p) => (p === "/bad" ? create(BatchResultSchema, { code: Code.AlreadyExists, message: '"/bad" already exists' }) : made(p)));
    const queue = new CommitQueue(server.send);
    const [good, bad] = [queue.submit(folder("/good")), queue.submit(folder("/bad"))];
    await turn();
    server.release.shift()!();
    expect((await good).case).toBe("createFolder");
    const err = ConnectError.from(await bad.catch((e: unknown) => e));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toBe('"/bad" already exists');
  });

  it("a failed call fails every change it carried, and the queue goes on", async () => {
    let calls = 0;
    const queue = new CommitQueue(async (changes) => {
      if (calls++ === 0) throw new ConnectError("metaserver unreachable", Code.Unavailable);
      return changes.map((c) => made(pathOf(c)));
    });
    const failed = await Promise.allSettled([queue.submit(folder("/x")), queue.submit(folder("/y"))]);
    expect(failed.map((f) => f.status === "rejected" && ConnectError.from(f.reason).code)).toEqual([Code.Unavailable, Code.Unavailable]);
    expect((await queue.submit(folder("/z"))).case).toBe("createFolder");
  });

  it("a server that answers the wrong number of results fails the batch, never a caller with another's result", async () => {
    const queue = new CommitQueue(async (changes) => changes.slice(1).map((c) => made(pathOf(c))));
    const failed = await Promise.allSettled([queue.submit(folder("/x")), queue.submit(folder("/y"))]);
    expect(failed.every((f) => f.status === "rejected" && ConnectError.from(f.reason).code === Code.Internal)).toBe(true);
  });
});
