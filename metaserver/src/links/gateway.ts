import http from "node:http";
import https from "node:https";
import { servingTls } from "@satchel/proto";
import type { MetaserverContext } from "../context.js";
import { normalizePath, ROOT } from "../tree/paths.js";
import { linkEnded } from "./access.js";
import { verifyLink } from "./link-tokens.js";

/** Entries a folder link lists per request. */
const FOLDER_PAGE = 1000;

/**
 * The share-link gateway: HTTPS (plain HTTP only in a plaintext development setup) GETs of /s/<token> download the linked file, or list the
 * linked folder as JSON with a URL for each entry (/s/<token>/<path inside>). Anyone holding the
 * URL may download until the link expires or is revoked, or its creator can no longer read the
 * path (see access.ts); nothing else is reachable through it. Requests are rate-limited per client
 * address (the "links" class, shared across metaservers; 429 with Retry-After beyond it). The log
 * names link ids, never tokens (a token is the link).
 */
export async function startLinkGateway(ctx: MetaserverContext): Promise<http.Server | https.Server> {
  const tls = servingTls(ctx.config.tls);
  const server = (tls ? https.createServer(tls) : http.createServer()).on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    admitted(ctx, req, res).then((ok) => (ok ? serve(ctx, req, res) : undefined)).catch((err: Error) => {
      ctx.logger.warn({ err: err.message, link: linkIdOf(req.url) }, "share link download failed");
      if (!res.headersSent) reply(res, 502, "the file could not be read; try again later");
      else res.destroy(err);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(ctx.config.linksPort, ctx.config.host, () => resolve());
  });
  return server;
}

/** Whether the client's address may make another request now; if not, answers 429 with Retry-After. */
async function admitted(ctx: MetaserverContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  const wait = await ctx.limits.take(req.socket.remoteAddress ?? "?", "links", 1);
  if (wait === 0) return true;
  ctx.metrics.rateLimited.inc({ class: "links" });
  res.setHeader("retry-after", String(Math.ceil(wait / 1000)));
  reply(res, 429, `too many requests from your address; retry in ${Math.ceil(wait / 1000)} s`);
  return false;
}

/** The link id a request names (the token's first part), for the log: never the token itself. */
function linkIdOf(url: string | undefined): string | undefined {
  return /^\/s\/(\d{1,19})\./.exec(url ?? "")?.[1];
}

function reply(res: http.ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(`${message}\n`);
}

async function serve(ctx: MetaserverContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "share links answer GET only");
  const url = new URL(req.url ?? "/", "http://link");
  const m = /^\/s\/([^/]+)(\/.*)?$/.exec(url.pathname);
  if (!m) return reply(res, 404, "no such link");
  const check = verifyLink(ctx.linkKeys, m[1]);
  if (!check.ok) return reply(res, check.reason === "expired" ? 410 : 404, check.reason === "expired" ? "this link has expired" : "no such link");
  const link = await ctx.namespaces.findLink(check.linkId);
  if (!link) return reply(res, 404, "no such link");
  if (!link.live) return reply(res, 410, "this link was revoked or has expired");
  const ended = await linkEnded(ctx.namespaces, link);
  if (ended) return reply(res, 410, `this link no longer works: ${ended}`);
  let inner = link.path;
  if (m[2] && m[2] !== "/") {
    let rest: string;
    try {
      rest = normalizePath(decodeURIComponent(m[2]));
    } catch {
      return reply(res, 400, "malformed path");
    }
    inner = link.path === ROOT ? rest : `${link.path}${rest}`;
  }
  const entry = inner === ROOT ? undefined : await ctx.files.get(link.namespaceId, inner);
  if (inner !== ROOT && (!entry || entry.deleted)) return reply(res, 404, "the linked file no longer exists");
  if (!entry || entry.isFolder) {
    const page = await ctx.files.list(link.namespaceId, inner, { recursive: false, includeDeleted: false, limit: FOLDER_PAGE, after: "" });
    const base = `/s/${m[1]}`;
    const body = JSON.stringify({
      name: inner === ROOT ? "" : inner.slice(inner.lastIndexOf("/") + 1),
      entries: page.entries.map((e) => {
        const rel = e.path.slice(link.path === ROOT ? 0 : link.path.length);
        return { name: e.name, isFolder: e.isFolder, size: Number(e.size), url: `${base}${rel.split("/").map(encodeURIComponent).join("/")}` };
      }),
      truncated: page.hasMore,
    });
    res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
    res.end(req.method === "HEAD" ? undefined : body);
    return;
  }
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": entry.size.toString(),
    "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(entry.name)}`,
  });
  if (req.method === "HEAD") return void res.end();
  for (const block of entry.blocks) {
    // The blockserver verifies every block against its hash before it answers.
    const { data } = await ctx.blocks.getBlock({ hash: block.hash });
    if (!res.write(data)) await new Promise((r) => res.once("drain", r));
  }
  res.end();
}
