import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statfsSync, statSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { minioClient, SHARD_BUCKET } from "../cluster/minio.js";

/**
 * Disk faults for the nemesis tests: damage a MinIO node's on-disk copy of a shard object, or the
 * whole drive, behind the server's back; or through S3, where MinIO has no chance to notice.
 *
 * The on-disk layout is that of the pinned MinIO (ops/src/config.ts, MINIO_VERSION) running on a
 * single drive, which is an erasure set of one drive (EC 1+0), not a plain file store:
 *
 *   <data>/<bucket>/<key>/xl.meta                  metadata; for an object of at most 128 KiB also
 *                                                  its bytes ("inline data")
 *   <data>/<bucket>/<key>/<data-dir uuid>/part.1   the bytes of a larger object
 *
 * Either way the bytes are stored as MinIO's streaming-bitrot format: the object is cut into
 * 1 MiB blocks and each block is preceded by its 32-byte HighwayHash-256, which MinIO checks on
 * every GET. What a GET of the damaged object then answers (HEAD reads only xl.meta):
 *
 *   flipBit, first 1 MiB block     503 SlowDownRead before any byte; HEAD 200
 *   flipBit, a later block         200 with the full Content-Length, then the connection is cut
 *                                  after the intact blocks (ECONNRESET "aborted" in Node)
 *   truncateShard, deleteShardData 503 SlowDownRead; HEAD 200
 *   truncateShardMeta              500 InternalError (msgp / CRC error in the message); HEAD 500
 *                                  (for an inline object cut inside its data: 503 as above)
 *   deleteShardOnDisk / ViaS3      404 NoSuchKey; HEAD 404
 *   wipeDisk, then start           404 NoSuchBucket for GET and PUT until the bucket is made again
 *   flipBitViaS3                   200 with the wrong bytes: only the shard CRC-32s catch it
 *
 * MinIO caches none of it: each fault shows on the very next request, and undoing a flip heals it.
 */

/** MinIO's erasure block (blockSizeV2); with one data drive it is also the bitrot block. */
const MINIO_BLOCK_BYTES = 1024 * 1024;
/** The HighwayHash-256 stored in front of each block (MinIO's default bitrot algorithm). */
const BITROT_HASH_BYTES = 32;
/** MinIO's default storage-class inline_block: objects up to this size live inside xl.meta. */
export const MINIO_INLINE_MAX_BYTES = 128 * 1024;

/** Where a node keeps its drive: the directory given to `minio server` by startMinioNode. */
export function nodeDataDir(stateDir: string, nodeIndex: number): string {
  return join(stateDir, `minio-${nodeIndex}`, "data");
}

/** The on-disk whereabouts of one object's bytes. */
export interface ShardFiles {
  /** The object's directory: removing it removes the object. */
  dir: string;
  /** The object's xl.meta. */
  meta: string;
  /** The file holding the object's bytes: `meta` itself when inline, else `<uuid>/part.1`. */
  data: string;
  inline: boolean;
  /** Where in `data` the stored stream (hash, block, hash, block, ...) starts, and its length. */
  streamOffset: number;
  streamLength: number;
  /** The object's length as a client sees it. */
  objectLength: number;
}

/** Finds the file(s) holding a shard object on a node's drive; throws if the object is not there. */
export function shardFiles(stateDir: string, nodeIndex: number, key: string): ShardFiles {
  const dir = join(nodeDataDir(stateDir, nodeIndex), SHARD_BUCKET, ...key.split("/"));
  const meta = join(dir, "xl.meta");
  if (!existsSync(meta)) throw new Error(`no object ${key} on the drive of minio-${nodeIndex} (${meta} is absent)`);
  const inline = inlineData(readFileSync(meta), meta);
  if (inline) return { dir, meta, data: meta, inline: true, ...inline, objectLength: objectLength(inline.streamLength) };

  // Overwriting an object moves its old data dir to the trash, so a live object has exactly one.
  const dataDirs = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  if (dataDirs.length !== 1) throw new Error(`${dir}: expected one data dir, found ${dataDirs.length} (${dataDirs.join(", ")})`);
  const parts = readdirSync(join(dir, dataDirs[0]));
  // Shard objects are written with one plain PUT; a multipart object would need each part mapped.
  if (parts.length !== 1 || parts[0] !== "part.1") throw new Error(`${dir}: expected only part.1, found ${parts.join(", ")}`);
  const data = join(dir, dataDirs[0], "part.1");
  const streamLength = statSync(data).size;
  return { dir, meta, data, inline: false, streamOffset: 0, streamLength, objectLength: objectLength(streamLength) };
}

/** The file offset of an object byte: past the hashes of its own block and every block before it. */
export function fileOffsetOf(files: ShardFiles, objectOffset: number): number {
  if (!Number.isInteger(objectOffset) || objectOffset < 0 || objectOffset >= files.objectLength) {
    throw new RangeError(`object offset ${objectOffset} is outside the object (0..${files.objectLength - 1})`);
  }
  return files.streamOffset + (Math.floor(objectOffset / MINIO_BLOCK_BYTES) + 1) * BITROT_HASH_BYTES + objectOffset;
}

/** A bit to flip: an exact object byte and bit, or one drawn from a seed (same seed, same bit). */
export type BitTarget = { objectOffset: number; bit?: number } | { seed: number | string };

export interface BitFlip {
  file: string;
  fileOffset: number;
  objectOffset: number;
  bit: number;
}

/**
 * Flips one bit of the object's bytes on disk, never of MinIO's metadata or bitrot hashes, so the
 * damage is a real corruption of the shard rather than a harmless change MinIO would ignore. The
 * pinned MinIO detects it on the next GET of the damaged block: see the module comment.
 */
export function flipBit(stateDir: string, nodeIndex: number, key: string, target: BitTarget): BitFlip {
  const files = shardFiles(stateDir, nodeIndex, key);
  if (files.objectLength === 0) throw new Error(`${key} on minio-${nodeIndex} is empty: no bit to flip`);
  const { objectOffset, bit } = pickBit(target, files.objectLength);
  if (!Number.isInteger(bit) || bit < 0 || bit > 7) throw new RangeError(`bit must be 0..7, got ${bit}`);
  const fileOffset = fileOffsetOf(files, objectOffset);
  const fd = openSync(files.data, "r+");
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, fileOffset);
    byte[0] ^= 1 << bit;
    writeSync(fd, byte, 0, 1, fileOffset);
  } finally {
    closeSync(fd);
  }
  return { file: files.data, fileOffset, objectOffset, bit };
}

export interface Truncation {
  file: string;
  fromBytes: number;
  toBytes: number;
}

/**
 * A torn write: cuts the file holding the object's bytes so only the first `keepObjectBytes` of
 * the object remain (default: half of it). For an inline object that file is xl.meta, whose
 * metadata stays whole; MinIO then finds the inline data short.
 */
export function truncateShard(stateDir: string, nodeIndex: number, key: string, keepObjectBytes?: number): Truncation {
  const files = shardFiles(stateDir, nodeIndex, key);
  const keep = keepObjectBytes ?? Math.floor(files.objectLength / 2);
  if (!Number.isInteger(keep) || keep < 0 || keep >= files.objectLength) {
    throw new RangeError(`keepObjectBytes must be in 0..${files.objectLength - 1}, got ${keep}`);
  }
  // Keep the hash of the block the cut falls in, so the cut is in object bytes, not in a hash.
  const toBytes = keep === 0 ? files.streamOffset : fileOffsetOf(files, keep);
  return truncateFile(files.data, toBytes);
}

/** Cuts xl.meta itself (default: to half its length), damaging the object's metadata. */
export function truncateShardMeta(stateDir: string, nodeIndex: number, key: string, toBytes?: number): Truncation {
  const { meta } = shardFiles(stateDir, nodeIndex, key);
  return truncateFile(meta, toBytes ?? Math.floor(statSync(meta).size / 2));
}

/**
 * Loses the object's bytes but keeps its xl.meta, as a lost data file would. Unlike a removed
 * object this is not a 404: MinIO still knows the object and answers 503 SlowDownRead. Only
 * objects above the inline size have a data file of their own.
 */
export function deleteShardData(stateDir: string, nodeIndex: number, key: string): void {
  const files = shardFiles(stateDir, nodeIndex, key);
  if (files.inline) throw new Error(`${key} on minio-${nodeIndex} is inline in xl.meta: it has no data file to lose`);
  rmSync(dirname(files.data), { recursive: true });
}

/** Removes the object's directory from the drive, as a lost file would: MinIO is not told. */
export function deleteShardOnDisk(stateDir: string, nodeIndex: number, key: string): void {
  rmSync(shardFiles(stateDir, nodeIndex, key).dir, { recursive: true });
}

export interface NodeAccess {
  endpoint: string;
  accessKey: string;
  secretKey: string;
}

/** Deletes the object through S3 (`ca`: trusted for an https node; default SATCHEL_TLS_CA's file), as a stray garbage collection or an operator would. */
export async function deleteShardViaS3(node: NodeAccess, key: string, ca?: Buffer): Promise<void> {
  await minioClient(node, ca).removeObject(SHARD_BUCKET, key);
}

/**
 * Silent corruption: reads the object, flips one bit and writes it back through S3. MinIO then
 * stores (and bitrot-protects) the wrong bytes and serves them with a 200: the one fault that only
 * the shard header's CRC-32s can catch.
 */
export async function flipBitViaS3(node: NodeAccess, key: string, target: BitTarget, ca?: Buffer): Promise<Omit<BitFlip, "file" | "fileOffset">> {
  const client = minioClient(node, ca);
  const chunks: Buffer[] = [];
  for await (const chunk of await client.getObject(SHARD_BUCKET, key)) chunks.push(chunk as Buffer);
  const object = Buffer.concat(chunks);
  if (object.length === 0) throw new Error(`${key} is empty: no bit to flip`);
  const { objectOffset, bit } = pickBit(target, object.length);
  if (!Number.isInteger(objectOffset) || objectOffset < 0 || objectOffset >= object.length) {
    throw new RangeError(`object offset ${objectOffset} is outside the object (0..${object.length - 1})`);
  }
  if (!Number.isInteger(bit) || bit < 0 || bit > 7) throw new RangeError(`bit must be 0..7, got ${bit}`);
  object[objectOffset] ^= 1 << bit;
  await client.putObject(SHARD_BUCKET, key, object, object.length);
  return { objectOffset, bit };
}

/**
 * A replaced drive: removes everything in the node's data directory, the bucket and MinIO's own
 * `.minio.sys` included. Call it while the node is stopped (checked through its pid file): the
 * node then starts as a fresh, bucketless drive. Under a running node it is a different fault.
 */
export function wipeDisk(stateDir: string, nodeIndex: number): void {
  const pidFile = join(stateDir, "run", `minio-${nodeIndex}.pid`);
  if (existsSync(pidFile) && isAlive(Number(readFileSync(pidFile, "utf8")))) {
    throw new Error(`minio-${nodeIndex} is running: stop it before wiping its drive`);
  }
  wipeDataDir(stateDir, nodeIndex);
}

/**
 * A drive emptied under a running node. MinIO may first answer 404 NoSuchBucket; within seconds
 * (often at once) it notices its format.json is gone, takes the drive offline and answers 503
 * SlowDownRead / SlowDownWrite (HEAD 503) while /minio/health/live stays 200, until the process
 * is restarted; it then starts bucketless, as after wipeDisk.
 */
export function wipeDiskUnderRunningNode(stateDir: string, nodeIndex: number): void {
  const dir = nodeDataDir(stateDir, nodeIndex);
  if (!existsSync(dir)) return;
  // The node keeps writing while its drive goes: a recursive delete would race it (ENOTEMPTY).
  // Each entry is renamed away at once instead, and removed once nothing writes into it.
  const away = `${dir}.failed-${process.pid}-${Date.now()}`;
  mkdirSync(away);
  for (const entry of readdirSync(dir)) renameSync(join(dir, entry), join(away, entry));
  setTimeout(() => rmSync(away, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 }), 10_000).unref();
}

function wipeDataDir(stateDir: string, nodeIndex: number): void {
  const dir = nodeDataDir(stateDir, nodeIndex);
  // The directory itself stays: it is the mount point of a real drive.
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

/**
 * The inline data of an xl.meta, if the object is inline. xl.meta v1.3+ is:
 *   "XL2 " | u16 major | u16 minor | msgpack bin: metadata | msgpack u32: its CRC |
 *   inline data: u8 version (1), msgpack map of version id ("null" when unversioned) -> bin
 */
function inlineData(buf: Buffer, file: string): { streamOffset: number; streamLength: number } | undefined {
  const fail = (why: string): never => {
    throw new Error(`${file}: ${why}; not an xl.meta this code understands (MinIO's format changed?)`);
  };
  if (buf.length < 8 || buf.toString("latin1", 0, 4) !== "XL2 ") fail("no XL2 header");
  const major = buf.readUInt16LE(4);
  const minor = buf.readUInt16LE(6);
  if (major !== 1 || minor < 3) fail(`xl.meta version ${major}.${minor}`);
  const r = new MsgpackCursor(buf, 8, fail);
  r.skip(r.binLength());
  if (buf[r.pos] !== 0xce) fail("no metadata CRC");
  r.pos += 5;
  if (r.pos >= buf.length) return undefined;
  if (buf[r.pos] !== 1) fail(`inline data version ${buf[r.pos]}`);
  r.pos += 1;
  const entries = r.mapLength();
  if (entries === 0) return undefined;
  if (entries !== 1) fail(`${entries} inline versions (versioned bucket?)`);
  r.skip(r.strLength());
  const streamLength = r.binLength();
  if (r.pos + streamLength > buf.length) fail("inline data runs past the end of the file");
  return { streamOffset: r.pos, streamLength };
}

/** Just enough msgpack to walk xl.meta's framing. */
class MsgpackCursor {
  constructor(private readonly buf: Buffer, public pos: number, private readonly fail: (why: string) => never) {}

  skip(n: number): void {
    this.pos += n;
  }

  binLength(): number {
    const t = this.byte();
    if (t === 0xc4) return this.uint(1);
    if (t === 0xc5) return this.uint(2);
    if (t === 0xc6) return this.uint(4);
    return this.fail(`expected msgpack bin at ${this.pos - 1}, found 0x${t.toString(16)}`);
  }

  strLength(): number {
    const t = this.byte();
    if (t >= 0xa0 && t <= 0xbf) return t & 0x1f;
    if (t === 0xd9) return this.uint(1);
    if (t === 0xda) return this.uint(2);
    if (t === 0xdb) return this.uint(4);
    return this.fail(`expected msgpack str at ${this.pos - 1}, found 0x${t.toString(16)}`);
  }

  mapLength(): number {
    const t = this.byte();
    if (t >= 0x80 && t <= 0x8f) return t & 0x0f;
    if (t === 0xde) return this.uint(2);
    if (t === 0xdf) return this.uint(4);
    return this.fail(`expected msgpack map at ${this.pos - 1}, found 0x${t.toString(16)}`);
  }

  private byte(): number {
    if (this.pos >= this.buf.length) this.fail("unexpected end of file");
    return this.buf[this.pos++];
  }

  private uint(bytes: 1 | 2 | 4): number {
    if (this.pos + bytes > this.buf.length) this.fail("unexpected end of file");
    const v = this.buf.readUIntBE(this.pos, bytes);
    this.pos += bytes;
    return v;
  }
}

/** The object length of a stored stream: every started block carries one hash. */
function objectLength(streamLength: number): number {
  return streamLength - Math.ceil(streamLength / (MINIO_BLOCK_BYTES + BITROT_HASH_BYTES)) * BITROT_HASH_BYTES;
}

/** A seed picks the bit by SHA-256, so a failing nemesis run can be replayed exactly. */
function pickBit(target: BitTarget, length: number): { objectOffset: number; bit: number } {
  if (!("seed" in target)) return { objectOffset: target.objectOffset, bit: target.bit ?? 0 };
  const h = createHash("sha256").update(`disk-fault:${target.seed}`).digest();
  return { objectOffset: Number(h.readBigUInt64BE(0) % BigInt(length)), bit: h[8] & 7 };
}

function truncateFile(file: string, toBytes: number): Truncation {
  const fd = openSync(file, "r+");
  try {
    const fromBytes = fstatSync(fd).size;
    if (!Number.isInteger(toBytes) || toBytes < 0 || toBytes >= fromBytes) {
      throw new RangeError(`${file}: cannot truncate ${fromBytes} bytes to ${toBytes}`);
    }
    ftruncateSync(fd, toBytes);
    return { file, fromBytes, toBytes };
  } finally {
    closeSync(fd);
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Drives that can fill up: each node's directory (its drive and its certificates) on a tmpfs of
 * its own, `mib` MiB at most (memory is used only for what is stored). A real file system, so a
 * full drive is MinIO's own: it answers writes 507 XMinioStorageFull ("minimum free drive
 * threshold") and still serves reads. Mounting needs root; elsewhere it returns false and the
 * nodes keep plain directories (no drive can then fill). Mounts outlive a killed process:
 * releaseDrives unmounts whatever is left under the state directory.
 */
export function mountSmallDrives(stateDir: string, nodes: number, mib: number): boolean {
  releaseDrives(stateDir);
  try {
    for (let i = 0; i < nodes; i++) {
      const dir = nodeDriveDir(stateDir, i);
      mkdirSync(dir, { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mib}m,mode=0700`, "satchel-drive", dir], { stdio: "pipe" });
    }
    return true;
  } catch {
    releaseDrives(stateDir);
    return false;
  }
}

/** Unmounts every drive mounted under the state directory (lazily: a dying node may still hold files). */
export function releaseDrives(stateDir: string): void {
  for (const point of mountsUnder(stateDir).reverse()) {
    try {
      execFileSync("umount", ["-l", point], { stdio: "pipe" });
    } catch {
      // Gone meanwhile, or not ours to unmount: nothing is left to release.
    }
  }
}

/** Where node `i`'s small drive is mounted (its data directory and certificates live inside). */
function nodeDriveDir(stateDir: string, nodeIndex: number): string {
  return dirname(nodeDataDir(stateDir, nodeIndex));
}

function mountsUnder(stateDir: string): string[] {
  const root = `${stateDir.replace(/\/+$/, "")}/`;
  // /proc/self/mounts escapes spaces, tabs, newlines and backslashes in octal.
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => unescape(l.split(" ")[1] ?? "")).filter((p) => p.startsWith(root));
}

/**
 * Fills node `i`'s small drive with a ballast file, leaving `leaveBytes` free (so a tiny write
 * may still land, as on a real full disk); `free()` removes it. Undefined when the node has no
 * small drive (see mountSmallDrives).
 */
export function fillDrive(stateDir: string, nodeIndex: number, leaveBytes = 16 * 1024): { bytes: number; free(): void } | undefined {
  const dir = nodeDriveDir(stateDir, nodeIndex);
  if (!mountsUnder(stateDir).includes(dir)) return undefined;
  const ballast = join(dir, "ballast");
  // The node writes meanwhile: what was free a moment ago may not be, so each try asks again.
  for (let attempt = 0; ; attempt++) {
    const s = statfsSync(dir);
    const bytes = Math.max(0, s.bavail * s.bsize - leaveBytes - attempt * 256 * 1024);
    try {
      execFileSync("fallocate", ["-l", String(bytes), ballast], { stdio: "pipe" });
      return { bytes, free: () => rmSync(ballast, { force: true }) };
    } catch (err) {
      rmSync(ballast, { force: true });
      if (attempt >= 20) throw err;
    }
  }
}
