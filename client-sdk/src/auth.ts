import { hostname } from "node:os";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { AuthService, type Tokens } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";

export interface Credentials {
  username: string;
  password: string;
  /** Shown in conflicted copies; defaults to the host name. */
  deviceName?: string;
}

/** Refresh this long before the access token expires, so calls never carry an expired one. */
const REFRESH_MARGIN_MS = 60_000;

/**
 * A signed-in device: logs in on first use, then keeps a current access token by refreshing it
 * (rotating the refresh token) and logs in again only when the refresh token is gone.
 */
export class AuthSession {
  readonly auth: Client<typeof AuthService>;
  private tokens: Tokens | undefined;
  private pending: Promise<string> | undefined;
  userId = 0n;
  deviceId = 0n;

  /** `ca`: the CA an https metaserver's certificate chains to (default: SATCHEL_TLS_CA's file, else the system's roots). */
  constructor(metaserverUrl: string, private readonly credentials: Credentials, ca?: Buffer) {
    this.auth = createClient(AuthService, createSatchelTransport({ baseUrl: metaserverUrl, ca }));
  }

  get deviceName(): string {
    return this.credentials.deviceName ?? hostname();
  }

  /** A current access token (for the transport's authorization header). */
  accessToken = (): Promise<string> => {
    const t = this.tokens;
    if (t?.accessExpireTime && timestampDate(t.accessExpireTime).getTime() - REFRESH_MARGIN_MS > Date.now()) return Promise.resolve(t.accessToken);
    this.pending ??= this.renew().finally(() => (this.pending = undefined));
    return this.pending;
  };

  private async renew(): Promise<string> {
    if (this.tokens) {
      try {
        this.tokens = (await this.auth.refresh({ refreshToken: this.tokens.refreshToken })).tokens;
        if (this.tokens) return this.tokens.accessToken;
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Unauthenticated) throw err;
      }
    }
    const res = await this.auth.login({ username: this.credentials.username, password: this.credentials.password, deviceName: this.deviceName });
    if (!res.tokens) throw new ConnectError("login returned no tokens", Code.Internal);
    this.tokens = res.tokens;
    this.userId = res.userId;
    this.deviceId = res.device?.deviceId ?? 0n;
    return res.tokens.accessToken;
  }
}
