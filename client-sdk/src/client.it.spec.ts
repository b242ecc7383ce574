import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { countShardObjects } from "@satchel/ops";
import { SatchelClient } from "./client.js";
import { defaultChunkerOptions } from "./chunker/fastcdc.js";

const { endpoints } = inject("cluster");
const dir = mkdtempSync(join(tmpdir(), "satchel-client-"));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

let client: SatchelClient;
beforeAll(() => {
  client = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: endpoints.devUser });
});

async function roundTrip(name: string, content: Buffer) {
  const local = join(dir, name);
  writeFileSync(local, content);
  const uploaded = await client.upload(local, `/round-trip/${name}`);
  expect(uploaded.size).toBe(BigInt(content.length));
  const back = join(dir, `${name}.back`);
  const downloaded = await client.download(`/round-trip/${name}`, back);
  expect(downloaded.revision).toBe(uploaded.revision);
  const bytes = readFileSync(back);
  expect(bytes.length).toBe(content.length);
  expect(sha(bytes)).toBe(sha(content));
  return uploaded;
}

describe("upload and download through all three services", () => {
  it("round-trips an empty file", async () => {
    const f = await roundTrip("empty", Buffer.alloc(0));
    expect(f.blocks).toHaveLength(0);
  });

  it("round-trips a 1-byte file", async () => {
    const f = await roundTrip("one-byte", Buffer.from([0x2a]));
    expect(f.blocks).toHaveLength(1);
  });

  it("round-trips a file of exactly one chunk (the chunker's minimum size)", async () => {
    const f = await roundTrip("one-chunk", randomBytes(defaultChunkerOptions.minSize));
    expect(f.blocks).toHaveLength(1);
  });

  it("round-trips 50 MiB of random bytes byte-identical", async () => {
    const f = await roundTrip("fifty-mib", randomBytes(50 * 1024 * 1024));
    expect(f.blocks.length).toBeGreaterThan(5);
  });

  it("stores identical content once: a second upload sends no blocks and adds no shards", async () => {
    const content = randomBytes(9 * 1024 * 1024 + 17);
    writeFileSync(join(dir, "dup-a"), content);
    let first = 0;
    await client.upload(join(dir, "dup-a"), "/dedup/a", (p) => (first = p.bytesTransferred));
    expect(first).toBe(content.length);
    const shardsBefore = await countShardObjects(endpoints);
    let second = -1;
    const copy = await client.upload(join(dir, "dup-a"), "/dedup/b", (p) => (second = p.bytesTransferred));
    expect(second).toBe(0);
    expect(await countShardObjects(endpoints)).toBe(shardsBefore);
    expect(copy.size).toBe(BigInt(content.length));
  });

  it("replaces a file with a new revision, and lists folders", async () => {
    writeFileSync(join(dir, "v1"), "version one");
    writeFileSync(join(dir, "v2"), "version two, longer");
    const a = await client.upload(join(dir, "v1"), "/listing/Notes.txt");
    const b = await client.upload(join(dir, "v2"), "/listing/notes.txt");
    expect(b.revision).toBeGreaterThan(a.revision);
    await client.upload(join(dir, "v1"), "/listing/sub/deep.txt");
    const top = await client.list("/listing");
    expect(top.map((e) => e.name).sort()).toEqual(["Notes.txt", "sub"]);
    const all = await client.list("/listing", true);
    expect(all.map((e) => e.path).sort()).toEqual(["/listing/Notes.txt", "/listing/sub", "/listing/sub/deep.txt"]);
    await client.download("/listing/NOTES.TXT", join(dir, "v2.back"));
    expect(readFileSync(join(dir, "v2.back"), "utf8")).toBe("version two, longer");
  });
});
