import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import {
  CommitFileRequestSchema, DeleteRequestSchema, MetaAdminService, MetaService, type BlockRef, type CommitFileRequest, type CommitFileResponse, type DeleteRequest, type DeleteResponse, type FileMetadata,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { AuthSession, type Credentials } from "./auth.js";
import { CommitQueue } from "./commit-queue.js";
import { chunkStream, defaultChunkerOptions, type ChunkerOptions } from "./chunker/fastcdc.js";

export interface SatchelClientOptions {
  /** https:// URLs (or http:// for a plaintext development cluster). */
  metaserverUrl: string;
  blockserverUrl: string;
  /** PEM of the CA the services' certificates chain to; default: the file SATCHEL_TLS_CA names, else the system's roots. */
  ca?: Buffer;
  /** A fixed token: an access token, or the operator's credential for admin calls. */
  token?: string;
  /** Or sign in as a user (tokens are refreshed as they expire). */
  credentials?: Credentials;
  chunker?: ChunkerOptions;
  /** Blocks uploaded or downloaded at once. */
  concurrency?: number;
}

export interface TransferProgress {
  bytesDone: number;
  bytesTotal: number;
  /** Bytes actually sent to or received from the blockserver (dedup makes this smaller). */
  bytesTransferred: number;
}

export type ProgressListener = (p: TransferProgress) => void;

/**
 * Read files in pieces of 1 MiB: large enough for chunking and hashing to run at full speed, small
 * enough that a chunk viewing one piece pins little (8 MiB pieces added ~30 MiB to a put's peak).
 */
const READ_BUFFER_BYTES = 1024 * 1024;
/** Commits tried before giving up when blocks keep vanishing (collected) between upload and commit. */
const MAX_COMMIT_ATTEMPTS = 5;
/** Blocks the uploader holds a grant for, or that the parent revision holds (empty grant), by hex hash. */
type HeldBlocks = Map<string, Uint8Array>;
const NO_GRANT = new Uint8Array(0);
/** Hashes asked about per HasBlocks call while uploading, and the most bytes of chunks held while asking. */
const HAS_BATCH = 4;
const HAS_BATCH_BYTES = 8 * 1024 * 1024;
/** Blocks this small are sent without asking HasBlocks first (the answer would cost a round trip too). */
const ASK_ABOVE_BYTES = 16 * 1024;

/** The temporary file a download writes beside its target, renamed over it once verified. */
export function partialDownloadName(name: string): string {
  return `.${name}.satchel-${randomUUID()}.partial`;
}

/** Whether a name is a download's temporary file (one a killed process left behind, or in flight). */
export function isPartialDownload(name: string): boolean {
  return /^\..+\.satchel-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.partial$/.test(name);
}

/**
 * The typed client of Satchel: uploads follow the write path (content-defined chunks, SHA-256,
 * send only the blocks the platform lacks, then commit), downloads verify every block.
 */
export class SatchelClient {
  readonly meta: Client<typeof MetaService>;
  readonly blocks: Client<typeof BlockService>;
  /** Operator calls on the blockserver: scrub status and control, storage node states. */
  readonly blockAdmin: Client<typeof BlockAdminService>;
  /** Operator calls on the metaserver: reference reconciliation. */
  readonly metaAdmin: Client<typeof MetaAdminService>;
  private readonly chunker: ChunkerOptions;
  private readonly concurrency: number;
  /** File commits made at about the same time go to the metaserver together (CommitBatch). */
  private readonly commits: CommitQueue;

  /** The CA the client trusts for the services' certificates, when given. */
  readonly ca: Buffer | undefined;
  /** The signed-in device, when the client was made with credentials. */
  readonly session: AuthSession | undefined;

  constructor(opts: SatchelClientOptions) {
    this.ca = opts.ca;
    this.session = opts.credentials ? new AuthSession(opts.metaserverUrl, opts.credentials, opts.ca) : undefined;
    const token = this.session?.accessToken ?? opts.token;
    if (!token) throw new Error("SatchelClient needs credentials or a token");
    const metaTransport = createSatchelTransport({ baseUrl: opts.metaserverUrl, token, ca: opts.ca });
    this.meta = createClient(MetaService, metaTransport);
    this.metaAdmin = createClient(MetaAdminService, metaTransport);
    const blockTransport = createSatchelTransport({ baseUrl: opts.blockserverUrl, token, ca: opts.ca });
    this.blocks = createClient(BlockService, blockTransport);
    this.blockAdmin = createClient(BlockAdminService, blockTransport);
    this.chunker = opts.chunker ?? defaultChunkerOptions;
    this.concurrency = opts.concurrency ?? 4;
    this.commits = new CommitQueue(async (changes) => (await this.meta.commitBatch({ changes: changes.map((change) => ({ change })) })).results);
  }

  /**
   * Commits one file, in a CommitBatch with whatever other commits this client makes meanwhile
   * (several files uploading at once commit in one call and one transaction per namespace).
   */
  async commit(req: Omit<CommitFileRequest, "$typeName" | "$unknown">): Promise<CommitFileResponse> {
    const result = await this.commits.submit({ case: "commit", value: create(CommitFileRequestSchema, req) });
    if (result.case !== "commit") throw new ConnectError(`CommitBatch answered a ${result.case ?? "missing"} result for a commit`, Code.Internal);
    return result.value;
  }

  /**
   * Deletes a file or a folder (see Delete), in a CommitBatch with whatever other changes this
   * client makes meanwhile: a device removing many files removes them in a few calls.
   */
  async remove(req: Omit<DeleteRequest, "$typeName" | "$unknown">): Promise<DeleteResponse> {
    const result = await this.commits.submit({ case: "delete", value: create(DeleteRequestSchema, req) });
    if (result.case !== "delete") throw new ConnectError(`CommitBatch answered a ${result.case ?? "missing"} result for a delete`, Code.Internal);
    return result.value;
  }

  /** Uploads a local file to a remote path, replacing the current version if there is one. */
  async upload(localPath: string, remotePath: string, onProgress?: ProgressListener): Promise<FileMetadata> {
    const current = await this.currentVersion(remotePath);
    return (await this.uploadAs(localPath, remotePath, current?.revision ?? 0n, randomUUID(), onProgress, current?.blocks)).file;
  }

  /**
   * Uploads a local file as a new version of remotePath derived from parentRevision (0: a new
   * file); a stale parent makes the server keep this upload as a conflicted copy (conflict: true).
   * Retrying with the same request id is safe. requestId may be a function of the file's blocks
   * (hashes, in order), called once the file is chunked: a caller that derives the id from what it
   * sends gets the same id when it sends the same version again, even after a crash.
   *
   * A hash is not a claim on content: the platform takes a block only from someone who has shown
   * it holds it. Blocks of the parent revision (parentBlocks: its block refs, or their hex hashes)
   * are not sent again, nor blocks this user sent lately (HasBlocks says so: an interrupted upload
   * resumes); every other block is sent — the blockserver verifies the bytes, keeps one copy
   * however many users send them, and answers with a grant that the commit presents.
   */
  async uploadAs(
    localPath: string, remotePath: string, parentRevision: bigint, requestId: string | ((blocks: BlockRef[]) => string), onProgress?: ProgressListener,
    parentBlocks?: Iterable<BlockRef | string>,
  ): Promise<{ file: FileMetadata; conflict: boolean; progress: TransferProgress }> {
    const { size } = await stat(localPath);
    const progress: TransferProgress = { bytesDone: 0, bytesTotal: size, bytesTransferred: 0 };
    const held: HeldBlocks = new Map();
    if (parentRevision > 0n) {
      for (const b of parentBlocks ?? []) {
        if (typeof b === "string") held.set(b, NO_GRANT);
        else held.set(Buffer.from(b.hash).toString("hex"), b.grant);
      }
    }
    let refs = await this.sendBlocks(localPath, progress, held, onProgress);
    const id = typeof requestId === "string" ? requestId : requestId(refs);
    for (let attempt = 0; ; attempt++) {
      const res = await this.commit({ path: remotePath, blocks: refs, size: BigInt(size), parentRevision, requestId: id });
      if (res.missingBlocks.length === 0 && res.file) return { file: res.file, conflict: res.conflict, progress };
      // A block was collected between upload and commit, a grant expired, or the parent no longer
      // holds a block: send those.
      if (attempt >= MAX_COMMIT_ATTEMPTS - 1) {
        throw new ConnectError(`commit still misses ${res.missingBlocks.length} blocks after ${attempt} re-uploads`, Code.Aborted);
      }
      const wanted = new Set(res.missingBlocks.map((h) => Buffer.from(h).toString("hex")));
      for (const hex of wanted) held.delete(hex);
      refs = await this.sendBlocks(localPath, progress, held, onProgress, wanted);
    }
  }

  /**
   * Chunks and hashes the file once; of the blocks not held yet, asks in small batches which ones
   * the platform knows this user holds, and uploads the others with bounded concurrency while
   * chunking goes on; memory stays at a few chunks. Grants join `held`; the refs carry them.
   */
  private async sendBlocks(localPath: string, progress: TransferProgress, held: HeldBlocks, onProgress?: ProgressListener, only?: Set<string>): Promise<BlockRef[]> {
    const refs: BlockRef[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let batch: { hash: Buffer; hex: string; data: Buffer }[] = [];
    const send = async (c: { hash: Buffer; hex: string; data: Buffer }) => {
      while (inFlight.size >= this.concurrency) await Promise.race(inFlight);
      if (failure) throw failure;
      const p: Promise<void> = withRetry(() => this.blocks.putBlock({ hash: c.hash, data: c.data }))
        .then((res) => {
          held.set(c.hex, res.grant);
          progress.bytesTransferred += c.data.length;
          onProgress?.(progress);
        })
        .catch((err) => {
          failure ??= err;
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    let batchBytes = 0;
    const flush = async () => {
      const current = batch;
      batch = [];
      batchBytes = 0;
      if (current.length === 0) return;
      // A block no bigger than a question about it is sent, not asked about: PutBlock answers a
      // block the platform has with a grant as well, and one round trip is saved per small file.
      const ask = only ? [] : current.filter((c) => c.data.length > ASK_ABOVE_BYTES);
      const known = ask.length > 0 ? await this.blocks.hasBlocks({ hashes: ask.map((c) => c.hash) }) : undefined;
      const present = new Map(ask.map((c, i) => [c.hex, known!.present[i] ? known!.grants[i] : undefined]));
      for (const c of current) {
        const grant = present.get(c.hex);
        if (grant) held.set(c.hex, grant);
        else await send(c);
      }
    };
    const seen = new Set<string>();
    const source = createReadStream(localPath, { highWaterMark: READ_BUFFER_BYTES });
    for await (const chunk of chunkStream(source, this.chunker)) {
      const hash = createHash("sha256").update(chunk).digest();
      refs.push({ $typeName: "satchel.meta.v1.BlockRef", hash, size: chunk.length, grant: NO_GRANT });
      progress.bytesDone += chunk.length;
      const hex = hash.toString("hex");
      if (!held.has(hex) && !seen.has(hex) && (!only || only.has(hex))) {
        seen.add(hex);
        batch.push({ hash, hex, data: chunk });
        batchBytes += chunk.length;
        if (batch.length >= HAS_BATCH || batchBytes >= HAS_BATCH_BYTES) await flush();
      }
      onProgress?.(progress);
      if (failure) throw failure;
    }
    await flush();
    await Promise.all(inFlight);
    if (failure) throw failure;
    for (const r of refs) r.grant = held.get(Buffer.from(r.hash).toString("hex")) ?? NO_GRANT;
    return refs;
  }

  /** The current version of a path, or undefined when nothing is there. */
  async currentVersion(remotePath: string): Promise<FileMetadata | undefined> {
    try {
      return (await this.meta.getFileMetadata({ path: remotePath })).file;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    }
  }

  /**
   * Downloads a file: fetches blocks (several at once, written in order), verifies each against
   * its hash, writes a temporary file beside the target and renames it into place, so a reader
   * never sees a partial file.
   */
  async download(remotePath: string, localPath: string, onProgress?: ProgressListener): Promise<FileMetadata> {
    const { file } = await this.meta.getFileMetadata({ path: remotePath });
    if (!file) throw new ConnectError(`"${remotePath}" has no metadata`, Code.NotFound);
    if (file.isFolder) throw new ConnectError(`"${remotePath}" is a folder`, Code.InvalidArgument);
    await this.downloadVersion(file, localPath, { onProgress });
    return file;
  }

  /**
   * Writes one version of a file to localPath (through a temporary file renamed into place).
   * localBlock may supply blocks the device already has (from any local file); they are verified
   * like fetched ones, and only the others are fetched. beforeReplace runs just before the rename
   * into place; when it throws, nothing is replaced (a sync agent checks there that the local file
   * was not edited while the download ran). The answer names the file as it landed (size, mtime
   * and inode, read before the rename, which keeps them): a write to it after the rename differs.
   */
  async downloadVersion(
    file: FileMetadata, localPath: string,
    opts: { onProgress?: ProgressListener; localBlock?: (ref: BlockRef) => Promise<Uint8Array | undefined>; beforeReplace?: () => Promise<void> } = {},
  ): Promise<TransferProgress & { landed: { size: number; mtimeMs: number; ino: number } }> {
    const remotePath = file.path;
    const onProgress = opts.onProgress;
    const total = Number(file.size);
    const progress: TransferProgress = { bytesDone: 0, bytesTotal: total, bytesTransferred: 0 };
    const temp = join(dirname(localPath), partialDownloadName(basename(localPath)));
    const handle = await open(temp, "w");
    try {
      const verified = (ref: BlockRef, data: Uint8Array | undefined) =>
        data !== undefined && data.length === ref.size && createHash("sha256").update(data).digest().equals(ref.hash);
      // Grants last minutes: a long download (or one queued behind others) asks for fresh ones
      // once, which also checks again that the caller may still read the file.
      let fresh: Promise<Map<string, Uint8Array>> | undefined;
      const freshGrant = async (ref: BlockRef) => {
        fresh ??= this.meta.getFileMetadata({ path: remotePath, revision: file.revision })
          .then((res) => new Map((res.file?.blocks ?? []).map((b) => [Buffer.from(b.hash).toString("hex"), b.grant])));
        return (await fresh).get(Buffer.from(ref.hash).toString("hex")) ?? ref.grant;
      };
      const getBlock = async (ref: BlockRef) => {
        try {
          return await withRetry(() => this.blocks.getBlock({ hash: ref.hash, grant: ref.grant }));
        } catch (err) {
          if (ConnectError.from(err).code !== Code.PermissionDenied) throw err;
          const grant = await freshGrant(ref);
          return withRetry(() => this.blocks.getBlock({ hash: ref.hash, grant }));
        }
      };
      const fetchBlock = async (ref: BlockRef) => {
        const local = await opts.localBlock?.(ref).catch(() => undefined);
        if (verified(ref, local)) return local!;
        const { data } = await getBlock(ref);
        if (!verified(ref, data)) {
          throw new ConnectError(`block ${Buffer.from(ref.hash).toString("hex")} of "${remotePath}" failed verification`, Code.DataLoss);
        }
        progress.bytesTransferred += data.length;
        return data;
      };
      const pending: Promise<Uint8Array>[] = [];
      let next = 0;
      const refill = () => {
        while (pending.length < this.concurrency && next < file.blocks.length) {
          const p = fetchBlock(file.blocks[next++]);
          p.catch(() => undefined); // observed when its turn comes; avoids an unhandled rejection meanwhile
          pending.push(p);
        }
      };
      refill();
      let position = 0;
      while (pending.length > 0) {
        const data = await pending.shift()!;
        refill();
        await handle.write(data, 0, data.length, position);
        position += data.length;
        progress.bytesDone = position;
        onProgress?.(progress);
      }
      if (position !== total) throw new ConnectError(`"${remotePath}" rebuilt to ${position} bytes, expected ${total}`, Code.DataLoss);
      await handle.sync();
      const { size, mtimeMs, ino } = await handle.stat();
      await handle.close();
      await opts.beforeReplace?.();
      await rename(temp, localPath);
      return { ...progress, landed: { size, mtimeMs, ino } };
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
  }

  /** Every entry of a folder, following pages. */
  async list(path: string, recursive = false): Promise<FileMetadata[]> {
    const out: FileMetadata[] = [];
    let pageToken = "";
    do {
      const page = await this.meta.listFolder({ path, recursive, pageToken });
      out.push(...page.entries);
      pageToken = page.hasMore ? page.nextPageToken : "";
    } while (pageToken);
    return out;
  }
}

/** Codes that say "try again": a node or shard was briefly unavailable, or a transaction lost a race. */
const RETRYABLE = new Set([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded]);

/** Retries an idempotent call (block puts and gets are) with exponential back-off. */
export async function withRetry<T>(call: () => Promise<T>, attempts = 4, firstDelayMs = 100): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= attempts || !RETRYABLE.has(ConnectError.from(err).code)) throw err;
      await new Promise((r) => setTimeout(r, firstDelayMs * 2 ** (attempt - 1)));
    }
  }
}
