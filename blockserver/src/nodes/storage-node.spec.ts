import * as http from "node:http";
import type { AddressInfo } from "node:net";
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
