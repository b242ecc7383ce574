#!/usr/bin/env node
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, Code } from "@connectrpc/connect";
import { Command } from "commander";
import { SatchelClient } from "../client.js";
import { loadCliConfig } from "./config.js";
import { formatBytes, ProgressBar } from "./progress.js";

const program = new Command()
  .name("satchel")
  .description("Satchel: self-hosted file storage and sync")
  .showHelpAfterError();

const client = () => new SatchelClient(loadCliConfig());

program
  .command("put")
  .description("upload a local file to a remote path")
  .argument("<local>", "local file")
  .argument("<remote>", "remote path, e.g. /docs/report.pdf")
  .action(async (local: string, remote: string) => {
    const bar = new ProgressBar("put");
    let last = { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0 };
    const file = await client().upload(local, remote, (p) => {
      last = { ...p };
      bar.update(p);
    });
    bar.done(last);
    console.log(`${file.path}  rev ${file.revision}  ${formatBytes(Number(file.size))}  ${file.blocks.length} blocks, ${formatBytes(last.bytesTransferred)} sent`);
  });

program
  .command("get")
  .description("download a remote file to a local path")
  .argument("<remote>", "remote path")
  .argument("<local>", "local file")
  .action(async (remote: string, local: string) => {
    const bar = new ProgressBar("get");
    let last = { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0 };
    const file = await client().download(remote, local, (p) => {
      last = { ...p };
      bar.update(p);
    });
    bar.done(last);
    console.log(`${local}  rev ${file.revision}  ${formatBytes(Number(file.size))}`);
  });

program
  .command("ls")
  .description("list a remote folder")
  .argument("[path]", "remote folder", "/")
  .option("-r, --recursive", "include sub-folders")
  .action(async (path: string, opts: { recursive?: boolean }) => {
    for (const e of await client().list(path, Boolean(opts.recursive))) {
      const when = e.modifiedTime ? timestampDate(e.modifiedTime).toISOString() : "";
      const size = e.isFolder ? "-" : formatBytes(Number(e.size));
      console.log(`${e.isFolder ? "d" : "-"} ${size.padStart(10)}  ${when}  ${e.path}${e.isFolder ? "/" : ""}`);
    }
  });

program.parseAsync().catch((err: unknown) => {
  const e = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message;
  console.error(`satchel: ${e}`);
  process.exit(1);
});
