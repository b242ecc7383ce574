import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Who a service credential names. Each Satchel service calls the others with a credential of its
 * own, and each receiving service lets a credential call only what that caller needs (its table of
 * ServicePermissions, in its server.ts): the notifyserver's credential cannot act as the metaserver. The operator's
 * credential (admin tools, `satchel admin …`, tests) may call every method. A service holds its own
 * credential and the digests of all of them, never another's credential. Pure (no I/O).
 */
export const SERVICE_IDENTITIES = ["metaserver", "blockserver", "notifyserver", "operator"] as const;
export type ServiceIdentity = (typeof SERVICE_IDENTITIES)[number];

/** The SHA-256 digests (hex) of the credentials a process accepts, by whom each names (SATCHEL_SERVICE_CREDENTIALS). */
export type ServiceCredentials = Partial<Record<ServiceIdentity, string>>;

/** What one caller may call on a receiving service: fully-qualified service names or "pkg.Service/Method". */
export type ServicePermissions = Partial<Record<Exclude<ServiceIdentity, "operator">, string[]>>;

export function credentialDigest(credential: string): string {
  return createHash("sha256").update(credential).digest("hex");
}

/** The digests of a set of credentials, as SATCHEL_SERVICE_CREDENTIALS holds them. */
export function credentialDigests(credentials: Partial<Record<ServiceIdentity, string>>): ServiceCredentials {
  return Object.fromEntries(Object.entries(credentials).map(([who, c]) => [who, credentialDigest(c)]));
}

/** Checks SATCHEL_SERVICE_CREDENTIALS as parsed: known names, SHA-256 digests; throws what is wrong. */
export function checkServiceCredentials(value: unknown): ServiceCredentials {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`SATCHEL_SERVICE_CREDENTIALS must be a JSON object {"<${SERVICE_IDENTITIES.join("|")}>": "<sha256 hex of its credential>"}`);
  }
  for (const [who, digest] of Object.entries(value)) {
    if (!(SERVICE_IDENTITIES as readonly string[]).includes(who)) {
      throw new Error(`SATCHEL_SERVICE_CREDENTIALS names "${who}": the callers are ${SERVICE_IDENTITIES.join(", ")}`);
    }
    if (typeof digest !== "string" || !/^[0-9a-f]{64}$/.test(digest)) {
      throw new Error(`SATCHEL_SERVICE_CREDENTIALS["${who}"] must be the SHA-256 (64 lowercase hex digits) of its credential, not the credential`);
    }
  }
  return value as ServiceCredentials;
}

/** Whom a bearer token names among the accepted credentials, or undefined (compared in constant time). */
export function identify(token: string, credentials: ServiceCredentials): ServiceIdentity | undefined {
  const digest = createHash("sha256").update(token).digest();
  let found: ServiceIdentity | undefined;
  // Every entry is compared, so the time taken says nothing about which one matched.
  for (const who of SERVICE_IDENTITIES) {
    const expected = credentials[who];
    if (expected !== undefined && timingSafeEqual(digest, Buffer.from(expected, "hex")) && found === undefined) found = who;
  }
  return found;
}

/** Whether `who` may call `method` ("pkg.Service/Method") of `service` ("pkg.Service"). */
export function servicePermits(permissions: ServicePermissions, who: ServiceIdentity, service: string, method: string): boolean {
  if (who === "operator") return true;
  const allowed = permissions[who] ?? [];
  return allowed.includes(service) || allowed.includes(method);
}
