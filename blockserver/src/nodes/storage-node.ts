import * as Minio from "minio";
import type { StorageNodeConfig } from "../config.js";

/** Thrown when a shard object is absent from its node. */
export class ShardMissingError extends Error {
  constructor(readonly node: string, readonly key: string) {
    super(`shard ${key} is missing on ${node}`);
  }
}

/**
 * One MinIO node seen as a plain disk service: put, get and delete whole shard objects.
 * This folder is the only place that knows about the S3 API.
 */
export class StorageNode {
  private readonly client: Minio.Client;
  readonly name: string;
  readonly bucket: string;

  constructor(config: StorageNodeConfig, private readonly timeoutMs: number) {
    const url = new URL(config.endpoint);
    this.name = config.name;
    this.bucket = config.bucket;
    this.client = new Minio.Client({
      endPoint: url.hostname,
      port: Number(url.port),
      useSSL: false,
      accessKey: config.accessKey,
      secretKey: config.secretKey,
    });
  }

  async put(key: string, parts: Uint8Array[]): Promise<void> {
    const body = Buffer.concat(parts);
    await this.withTimeout(`put ${key}`, this.client.putObject(this.bucket, key, body, body.length));
  }

  async get(key: string): Promise<Buffer> {
    return this.withTimeout(`get ${key}`, (async () => {
      let stream;
      try {
        stream = await this.client.getObject(this.bucket, key);
      } catch (err) {
        if ((err as { code?: string }).code === "NoSuchKey") throw new ShardMissingError(this.name, key);
        throw err;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    })());
  }

  async delete(key: string): Promise<void> {
    await this.withTimeout(`delete ${key}`, this.client.removeObject(this.bucket, key));
  }

  private async withTimeout<T>(what: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: ${what} timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
