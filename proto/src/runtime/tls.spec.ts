import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mysqlTls, redisTls, secureUrl, servingTls, tlsFromEnv } from "./tls.js";

const dir = mkdtempSync(join(tmpdir(), "satchel-tls-env-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string) => {
  const path = join(dir, name);
  writeFileSync(path, `-----BEGIN ${name}-----\n`);
  return path;
};
const files = { SATCHEL_TLS_CA: file("ca"), SATCHEL_TLS_CERT: file("cert"), SATCHEL_TLS_KEY: file("key") };

describe("a process's TLS settings", () => {
  it("are required: nothing set is an error naming both ways out, never a silent plaintext", () => {
    expect(() => tlsFromEnv({}, true)).toThrow(/TLS is required: set SATCHEL_TLS_CA, SATCHEL_TLS_CERT, SATCHEL_TLS_KEY .*SATCHEL_PLAINTEXT=on/);
    expect(() => tlsFromEnv({ SATCHEL_TLS_CA: files.SATCHEL_TLS_CA }, true)).toThrow(/set SATCHEL_TLS_CERT, SATCHEL_TLS_KEY/);
    // A pure client needs only the CA.
    expect(tlsFromEnv({ SATCHEL_TLS_CA: files.SATCHEL_TLS_CA }, false)?.ca.toString()).toContain("BEGIN ca");
  });

  it("read the PEM files named, and say which file could not be read", () => {
    const tls = tlsFromEnv(files, true)!;
    expect([tls.ca, tls.cert, tls.key].map((b) => b!.toString().trim())).toEqual(["-----BEGIN ca-----", "-----BEGIN cert-----", "-----BEGIN key-----"]);
    expect(servingTls(tls)).toEqual({ cert: tls.cert, key: tls.key });
    expect(() => tlsFromEnv({ ...files, SATCHEL_TLS_KEY: join(dir, "missing.key") }, true)).toThrow(/SATCHEL_TLS_KEY: cannot read .*missing\.key/);
  });

  it("are plaintext only when asked explicitly, and not both at once", () => {
    expect(tlsFromEnv({ SATCHEL_PLAINTEXT: "on" }, true)).toBeUndefined();
    expect(servingTls(undefined)).toBeUndefined();
    expect(() => tlsFromEnv({ ...files, SATCHEL_PLAINTEXT: "on" }, true)).toThrow(/both set: choose one/);
    expect(() => tlsFromEnv({ SATCHEL_PLAINTEXT: "yes" }, true)).toThrow(/SATCHEL_PLAINTEXT must be "on" or "off"/);
  });

  it("leave no hop in plaintext by a stale URL while TLS is on", () => {
    const tls = { ca: Buffer.from("ca") };
    expect(() => secureUrl("SATCHEL_REDIS_URL", "redis://127.0.0.1:7330", tls)).toThrow(/SATCHEL_REDIS_URL is redis:\/\/127\.0\.0\.1:7330, which is plaintext while TLS is on: use rediss:\/\//);
    expect(() => secureUrl("SATCHEL_BLOCKSERVER_URL", "http://127.0.0.1:7301", tls)).toThrow(/use https:\/\//);
    expect(secureUrl("SATCHEL_REDIS_URL", "rediss://127.0.0.1:7330", tls)).toBe("rediss://127.0.0.1:7330");
    // Schemes are case-insensitive: an upper-case plaintext scheme is still plaintext.
    for (const url of ["HTTP://127.0.0.1:7301", "Redis://127.0.0.1:7330", "hTtP://x"]) expect(() => secureUrl("SATCHEL_X_URL", url, tls)).toThrow(/plaintext while TLS is on/);
    expect(secureUrl("SATCHEL_X_URL", "HTTPS://127.0.0.1:7301", tls)).toBe("HTTPS://127.0.0.1:7301");
    expect(secureUrl("SATCHEL_BLOCKSERVER_URL", "http://127.0.0.1:7301", undefined)).toBe("http://127.0.0.1:7301");
  });

  it("give the drivers TLS options that check the CA, or none in plaintext", () => {
    const ca = Buffer.from("ca");
    expect(mysqlTls({ ca })).toEqual({ ssl: { ca, rejectUnauthorized: true, verifyIdentity: true } });
    expect(mysqlTls(undefined)).toEqual({});
    expect(redisTls("rediss://127.0.0.1:1", { ca }).tls?.ca).toBe(ca);
    expect(redisTls("redis://127.0.0.1:1", { ca })).toEqual({});
    expect(redisTls("REDISS://127.0.0.1:1", { ca }).tls?.ca).toBe(ca);
  });
});
