import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { principalKey } from "@satchel/proto";
import { FileMetadataSchema, MetaService, type FileMetadata } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { Code, ConnectError, invalidArgument, notFound, toConnectError } from "../errors.js";
import type { FileRecord } from "../store/files.js";
import { normalizePath, ROOT } from "../tree/paths.js";

const HASH_BYTES = 32;
const MAX_REQUEST_ID = 64;

export function fileRoutes(ctx: MetaserverContext) {
  const rootNamespace = async (hctx: HandlerContext) => {
    const principal = hctx.values.get(principalKey);
    if (!principal) throw new ConnectError("no authenticated caller", Code.Unauthenticated);
    return (await ctx.namespaces.ensureUser(principal.userId)).rootNamespaceId;
  };
  const guarded = <Req, Res>(what: string, fn: (req: Req, hctx: HandlerContext) => Promise<Res>) =>
    async (req: Req, hctx: HandlerContext): Promise<Res> => {
      try {
        return await fn(req, hctx);
      } catch (err) {
        throw toConnectError(err, what);
      }
    };

  return (router: ConnectRouter) =>
    router.service(MetaService, {
      commitFile: guarded("CommitFile", async (req, hctx) => {
        const path = normalizePath(req.path);
        if (path === ROOT) throw invalidArgument("cannot commit a file at the root path \"/\"");
        if (req.requestId.length > MAX_REQUEST_ID) throw invalidArgument(`request_id is longer than ${MAX_REQUEST_ID} characters`);
        let total = 0n;
        for (const [i, b] of req.blocks.entries()) {
          if (b.hash.length !== HASH_BYTES) throw invalidArgument(`block ${i}: hash must be ${HASH_BYTES} bytes of SHA-256, got ${b.hash.length}`);
          if (b.size === 0) throw invalidArgument(`block ${i}: size must be positive`);
          total += BigInt(b.size);
        }
        if (total !== req.size) throw invalidArgument(`size ${req.size} does not equal the sum of the block sizes (${total})`);
        const unique = [...new Map(req.blocks.map((b) => [Buffer.from(b.hash).toString("hex"), b.hash])).values()];
        if (unique.length > 0) {
          // Reserve, not just ask: a block about to be referenced must not be collected before the
          // reference (relayed from the outbox after the commit) reaches the blockserver.
          const { present } = await ctx.blocks.reserveBlocks({ hashes: unique }, { signal: hctx.signal });
          const missing = unique.filter((_, i) => !present[i]);
          if (missing.length > 0) return { missingBlocks: missing };
        }
        const namespaceId = await rootNamespace(hctx);
        const file = await ctx.files.commit({
          namespaceId, path, blocks: req.blocks, size: req.size, parentRevision: req.parentRevision, requestId: req.requestId,
        });
        ctx.relay.wake();
        await ctx.publisher.published(namespaceId, file.cursor);
        return { missingBlocks: [], file: toMetadata(file) };
      }),
      getFileMetadata: guarded("GetFileMetadata", async (req, hctx) => {
        const path = normalizePath(req.path);
        if (path === ROOT) {
          return { file: create(FileMetadataSchema, { path: ROOT, name: "", isFolder: true, namespaceId: await rootNamespace(hctx) }) };
        }
        const file = await ctx.files.get(await rootNamespace(hctx), path);
        if (!file) throw notFound(`"${path}" does not exist`);
        return { file: toMetadata(file) };
      }),
      listFolder: guarded("ListFolder", async (req, hctx) => {
        const path = normalizePath(req.path);
        const namespaceId = await rootNamespace(hctx);
        if (path !== ROOT) {
          const folder = await ctx.files.get(namespaceId, path);
          if (!folder) throw notFound(`folder "${path}" does not exist`);
          if (!folder.isFolder) throw invalidArgument(`"${path}" is a file, not a folder`);
        }
        const pageSize = Math.min(req.pageSize || ctx.config.listPageSize, ctx.config.listPageSize);
        let after = "";
        if (req.pageToken) {
          after = Buffer.from(req.pageToken, "base64url").toString();
          if (!after.startsWith("/")) throw invalidArgument("page_token is malformed: pass next_page_token from the previous response unchanged");
        }
        const page = await ctx.files.list(namespaceId, path, req.recursive, pageSize, after);
        const last = page.entries.at(-1);
        return {
          entries: page.entries.map(toMetadata),
          hasMore: page.hasMore,
          nextPageToken: page.hasMore && last ? Buffer.from(last.path.toLowerCase().normalize("NFC")).toString("base64url") : "",
        };
      }),
    });
}

function toMetadata(f: FileRecord): FileMetadata {
  return create(FileMetadataSchema, {
    path: f.path,
    name: f.name,
    isFolder: f.isFolder,
    revision: f.revision,
    size: f.size,
    blocks: f.blocks.map((b) => ({ hash: b.hash, size: b.size })),
    modifiedTime: timestampFromDate(f.modifiedAt),
    namespaceId: f.namespaceId,
    cursor: f.cursor,
  });
}
