import { execFileSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** A certificate and its key, as files (what MariaDB, Redis, MinIO and the services are given). */
export interface CertFiles {
  cert: string;
  key: string;
}

/** The local CA and one certificate per server process, under <state>/tls. */
export interface ClusterCerts {
  dir: string;
  /** The CA certificate every client of the cluster trusts. */
  ca: string;
  server(name: string): CertFiles;
}

/** Certificates are made again when they have less than this left. */
const RENEW_BEFORE_MS = 30 * 86400_000;
const CA_DAYS = 3650;
const LEAF_DAYS = 825;

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed (is openssl installed? "bash ops/install.sh"): ${stderr || (err as Error).message}`);
  }
}

/** A certificate that is there, valid for a while yet, and (for a leaf) signed by `ca`, for `host`, with its key. */
function usable(certPath: string, keyPath: string, ca?: { cert: X509Certificate; host: string }): boolean {
  if (!existsSync(certPath) || !existsSync(keyPath)) return false;
  try {
    const cert = new X509Certificate(readFileSync(certPath));
    if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return false;
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))) return false;
    return !ca || (cert.checkIssued(ca.cert) && cert.verify(ca.cert.publicKey) && cert.checkIP(ca.host) !== undefined);
  } catch {
    return false;
  }
}

/** The certificates of a running cluster, found beside its CA file (ClusterEndpoints.ca). */
export function clusterCertsAt(caFile: string): ClusterCerts {
  const dir = dirname(caFile);
  return { dir, ca: caFile, server: (name) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }) };
}

/**
 * A development CA and certificates signed by it, made with Debian's openssl (ECDSA P-256), kept
 * in the state directory and reused while valid. Every server certificate names the loopback
 * address and "localhost", where the local cluster listens. Keys are readable by their owner only.
 * The CA's key never leaves the state directory: a production deployment brings its own CA and
 * points SATCHEL_TLS_* at its files instead.
 */
export function ensureClusterCerts(stateDir: string, host: string, servers: string[]): ClusterCerts {
  const dir = join(stateDir, "tls");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  if (!usable(ca, caKey)) {
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey], dir);
    chmodSync(caKey, 0o600);
    openssl([
      "req", "-x509", "-new", "-key", caKey, "-sha256", "-days", String(CA_DAYS), "-out", ca,
      "-subj", "/O=Satchel development/CN=Satchel local CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ], dir);
  }
  const caCert = { cert: new X509Certificate(readFileSync(ca)), host };
  const files = clusterCertsAt(ca).server;
  for (const name of servers) {
    const { cert, key } = files(name);
    // Made again unless it still fits: a run cut short between a new CA and its leaves, or between
    // a new key and its certificate, leaves nothing half-made in use.
    if (usable(cert, key, caCert)) continue;
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
      `subjectAltName=IP:${host},DNS:localhost`,
      "",
    ].join("\n"));
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], dir);
    chmodSync(key, 0o600);
    openssl(["req", "-new", "-key", key, "-out", csr, "-subj", `/O=Satchel development/CN=${name}`], dir);
    openssl([
      "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-sha256",
      "-days", String(LEAF_DAYS), "-extfile", ext, "-out", cert,
    ], dir);
    rmSync(csr, { force: true });
    rmSync(ext, { force: true });
  }
  return clusterCertsAt(ca);
}
