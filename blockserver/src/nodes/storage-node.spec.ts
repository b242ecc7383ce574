import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { StorageNode } from "./storage-node.js";

/**
 * The node's HTTP exchanges against a plain HTTP server that behaves as a node whose idle timeout
 * closes a kept-alive connection just as the next request is sent on it: the request after the
 * first on any connection is met by a reset. (MinIO itself is exercised by the integration tests;
 * this race cannot be timed against it.)
 */
describe("StorageNode on kept-alive connections", () => {
  let server: http.Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  async function nodeResettingReusedSockets(resetFresh = false) {
    const objects = new Map<string, Buffer>();
    const served = new WeakMap<object, number>();
    const seen = { resets: 0, answered: 0 };
    server = http.createServer((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1 || resetFresh) {
        seen.resets++;
        req.socket.resetAndDestroy();
        return;
      }
      const key = new URL(req.url!, "http://x").pathname;
      const body: Buffer[] = [];
      req.on("data", (c: Buffer) => body.push(c));
      req.on("end", () => {
        seen.answered++;
        if (req.method === "PUT") {
          objects.set(key, Buffer.concat(body));
          res.end();
        } else if (objects.has(key)) res.end(objects.get(key));
        else {
          res.statusCode = 404;
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const node = new StorageNode({ name: "n0", endpoint: `http://127.0.0.1:${port}`, accessKey: "a", secretKey: "secret-key", bucket: "shards" }, 2000);
    return { node, objects, seen };
  }

  it("sends a PUT and a GET again on a new connection when the reused one was reset, and stays healthy", async () => {
    const { node, objects, seen } = await nodeResettingReusedSockets();
    await node.put("k1", [Buffer.from("head"), Buffer.from("payload")]);
    await node.put("k2", [Buffer.from("second")]);
    expect(objects.get("/shards/k2")?.toString()).toBe("second");
    expect((await node.get("k1")).toString()).toBe("headpayload");
    expect(seen.resets).toBe(2);
    expect(seen.answered).toBe(3);
    expect(node.healthy).toBe(true);
  });

  it("reports a reset on a fresh connection as the node's failure, without a second try", async () => {
    const { node, seen } = await nodeResettingReusedSockets(true);
    await expect(node.put("k", [Buffer.from("x")])).rejects.toMatchObject({ code: "ECONNRESET" });
    expect(seen.resets).toBe(1);
    expect(node.healthy).toBe(false);
  });
});

/**
 * Health under load: a node whose identity probe is slow but which keeps answering other requests
 * is busy, not down; one that answers nothing is down; one that refuses connections is down at once.
 */
describe("StorageNode health: busy is not down", () => {
  let server: http.Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? (server.closeAllConnections(), server.close(() => resolve())) : resolve())));

  /** A node that holds identity reads for `identityDelayMs` and serves everything else at once (or nothing, when hung). */
  async function slowNode(opts: { identityDelayMs: number; hung?: boolean }) {
    server = http.createServer((req, res) => {
      if (opts.hung) return; // never answers
      const answer = () => res.end("{}");
      if (req.url!.includes("satchel-node")) setTimeout(answer, opts.identityDelayMs);
      else answer();
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return new StorageNode({ name: "n0", endpoint: `http://127.0.0.1:${port}`, accessKey: "a", secretKey: "secret-key", bucket: "shards" }, 2000);
  }

  it("a probe that times out while the node serves other requests leaves it healthy", async () => {
    const node = await slowNode({ identityDelayMs: 1500 });
    const probe = node.probe(300);
    // Shard reads answered while the probe waits: the node is working through a burst.
    for (let i = 0; i < 5; i++) {
      await node.get(`k${i}`);
      await new Promise((r) => setTimeout(r, 40));
    }
    expect(await probe).toBe("up");
    expect(node.healthy).toBe(true);
  });

  it("a probe that times out on a node that answers nothing marks it down", async () => {
    const node = await slowNode({ identityDelayMs: 0, hung: true });
    expect(await node.probe(300)).toBe("down");
    expect(node.healthy).toBe(false);
  });

  it("a slow probe with no other traffic marks the node down, and the next answer brings it back", async () => {
    const node = await slowNode({ identityDelayMs: 600 });
    expect(await node.probe(200)).toBe("down");
    expect(node.healthy).toBe(false);
    expect(await node.probe(2000)).toBe("up");
    expect(node.healthy).toBe(true);
  });

  it("a refused connection marks the node down at once, whatever it answered before", async () => {
    const node = await slowNode({ identityDelayMs: 0 });
    await node.get("k");
    await new Promise<void>((resolve) => (server!.closeAllConnections(), server!.close(() => resolve())));
    server = undefined;
    expect(await node.probe(1000)).toBe("down");
    expect(node.healthy).toBe(false);
  });

  it("a timeout that fires while the event loop was held up still sees an answer that arrived meanwhile", async () => {
    // The node runs on a thread of its own, so it answers while this thread's loop is held up.
    const worker = new Worker(`
      const http = require("node:http");
      const { parentPort } = require("node:worker_threads");
      const server = http.createServer((req, res) => setTimeout(() => res.end("{}"), 50));
      server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port));
    `, { eval: true });
    try {
      const port = await new Promise<number>((resolve) => worker.once("message", resolve));
      const node = new StorageNode({ name: "n0", endpoint: `http://127.0.0.1:${port}`, accessKey: "a", secretKey: "secret-key", bucket: "shards" }, 2000);
      await node.get("warm"); // a kept-alive connection, so the probe's request leaves at once
      const probe = node.probe(100);
      await new Promise((r) => setTimeout(r, 10)); // the request is on the wire
      // Held up in the check phase (as by work in an I/O callback), so the next loop iteration
      // reaches its expired timers before it reads the answer waiting on the socket.
      await new Promise<void>((resolve) => setImmediate(() => {
        const until = Date.now() + 400;
        while (Date.now() < until) { /* the loop is held up past the answer and the timeout */ }
        resolve();
      }));
      expect(await probe).toBe("up");
      expect(node.healthy).toBe(true);
    } finally {
      await worker.terminate();
    }
  });
});
