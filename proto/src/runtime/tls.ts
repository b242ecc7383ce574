import { readFileSync } from "node:fs";
import * as https from "node:https";
import type { ConnectionOptions } from "node:tls";
import { envString, type Env } from "./env.js";

/**
 * Transport security of one Satchel process: the certificate it serves with and the CA it trusts
 * for every server it calls (other services, MariaDB, Redis, MinIO). Every hop is TLS unless a
 * process is told, explicitly, that it runs in plaintext (SATCHEL_PLAINTEXT=on, for local
 * development only).
 */
export interface TlsConfig {
  /** PEM of the certificate authorities this process trusts. */
  ca: Buffer;
  /** PEM certificate chain and private key this process serves with (services only). */
  cert?: Buffer;
  key?: Buffer;
}

/** A server's certificate chain and key, both PEM. */
export interface ServingTls {
  cert: Buffer;
  key: Buffer;
}

export const PLAINTEXT_SETTING = "SATCHEL_PLAINTEXT";

function readPem(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${name}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads SATCHEL_TLS_CA (the CA bundle trusted for outgoing connections), SATCHEL_TLS_CERT and
 * SATCHEL_TLS_KEY (the serving certificate and key; required when `serving`), or SATCHEL_PLAINTEXT=on.
 * Returns undefined only for the explicit plaintext setting; anything else missing is an error
 * that says what to set, so that no process falls back to plaintext by accident.
 */
export function tlsFromEnv(env: Env, serving: boolean): TlsConfig | undefined {
  const plaintext = envString(env, PLAINTEXT_SETTING, "off");
  if (plaintext !== "on" && plaintext !== "off") throw new Error(`${PLAINTEXT_SETTING} must be "on" or "off", got "${plaintext}"`);
  const caPath = envString(env, "SATCHEL_TLS_CA", "");
  const certPath = envString(env, "SATCHEL_TLS_CERT", "");
  const keyPath = envString(env, "SATCHEL_TLS_KEY", "");
  if (plaintext === "on") {
    if (caPath || certPath || keyPath) throw new Error(`${PLAINTEXT_SETTING}=on and SATCHEL_TLS_* are both set: choose one`);
    return undefined;
  }
  const missing = [!caPath && "SATCHEL_TLS_CA", serving && !certPath && "SATCHEL_TLS_CERT", serving && !keyPath && "SATCHEL_TLS_KEY"].filter(Boolean);
  if (missing.length > 0) {
    throw new Error(
      `TLS is required: set ${missing.join(", ")} (PEM files; "bash ops/up.sh" makes a local CA and certificates ` +
        `under its state directory), or set ${PLAINTEXT_SETTING}=on to run without TLS for local development only`,
    );
  }
  return {
    ca: readPem("SATCHEL_TLS_CA", caPath),
    ...(serving ? { cert: readPem("SATCHEL_TLS_CERT", certPath), key: readPem("SATCHEL_TLS_KEY", keyPath) } : {}),
  };
}

/**
 * The URL of a hop, refused when it is plaintext (http://, redis://) while the process has TLS
 * settings: a hop is never left in plaintext by a stale setting.
 */
export function secureUrl(name: string, url: string, tls: TlsConfig | undefined): string {
  // Schemes are case-insensitive (RFC 3986): HTTP:// is plaintext too.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (tls && (scheme === "http" || scheme === "redis")) {
    throw new Error(`${name} is ${url}, which is plaintext while TLS is on: use ${scheme}s:// (or ${PLAINTEXT_SETTING}=on, for local development only)`);
  }
  return url;
}

/** The serving half of a TLS config; undefined in plaintext. */
export function servingTls(tls: TlsConfig | undefined): ServingTls | undefined {
  if (!tls) return undefined;
  if (!tls.cert || !tls.key) throw new Error("this process serves, so it needs SATCHEL_TLS_CERT and SATCHEL_TLS_KEY");
  return { cert: tls.cert, key: tls.key };
}

let processTrust: { path: string; pem: Buffer } | undefined;

/**
 * The CA a client trusts when none is given: the file SATCHEL_TLS_CA names (read once), or
 * undefined for the system's roots. Lets a program that reaches a local cluster (the CLI, tests,
 * benchmarks) trust its CA by setting one variable, like grpc's GRPC_DEFAULT_SSL_ROOTS_FILE_PATH.
 */
export function defaultTrust(): Buffer | undefined {
  const path = process.env.SATCHEL_TLS_CA;
  if (!path) return undefined;
  if (processTrust?.path !== path) processTrust = { path, pem: readPem("SATCHEL_TLS_CA", path) };
  return processTrust.pem;
}

/** Node TLS client options that trust `ca` (or the default trust) and check the server's name. */
export function clientTlsOptions(ca: Buffer | undefined = defaultTrust()): ConnectionOptions {
  return ca ? { ca, minVersion: "TLSv1.2" } : { minVersion: "TLSv1.2" };
}

/** mysql2's `ssl` option: TLS with the CA and the server's name checked, or nothing in plaintext. */
export function mysqlTls(tls: Pick<TlsConfig, "ca"> | undefined): { ssl?: { ca: Buffer; rejectUnauthorized: true; verifyIdentity: true } } {
  return tls ? { ssl: { ca: tls.ca, rejectUnauthorized: true, verifyIdentity: true } } : {};
}

/** ioredis's `tls` option for a rediss:// URL, trusting the process's CA (nothing for redis://, which is plaintext). */
export function redisTls(url: string, tls: Pick<TlsConfig, "ca"> | undefined): { tls?: ConnectionOptions } {
  return /^rediss:/i.test(url) ? { tls: clientTlsOptions(tls?.ca) } : {};
}

/** A keep-alive HTTPS agent that trusts `ca`. */
export function httpsAgent(ca: Buffer | undefined, opts: https.AgentOptions = {}): https.Agent {
  return new https.Agent({ ...opts, ...clientTlsOptions(ca) });
}
