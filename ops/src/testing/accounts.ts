import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { caOf } from "../cluster/trust.js";

export interface TestAccount {
  username: string;
  password: string;
  userId: bigint;
}

/** A fresh account with a unique name, so that tests never see each other's files. */
export async function createAccount(endpoints: ClusterEndpoints, prefix = "user"): Promise<TestAccount> {
  const auth = createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, ca: caOf(endpoints) }));
  const username = `${prefix}-${randomBytes(5).toString("hex")}`;
  const password = randomBytes(12).toString("base64url");
  const { userId } = await auth.createAccount({ username, password });
  return { username, password, userId };
}

/** Signs a device in and returns its access token. */
export async function signIn(endpoints: ClusterEndpoints, account: { username: string; password: string }, deviceName = "test-device"): Promise<string> {
  const auth = createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, ca: caOf(endpoints) }));
  const res = await auth.login({ username: account.username, password: account.password, deviceName });
  return res.tokens!.accessToken;
}

/** A MetaService client acting as one signed-in device of an account. */
export async function metaClientFor(endpoints: ClusterEndpoints, account: { username: string; password: string }, deviceName = "test-device") {
  const token = await signIn(endpoints, account, deviceName);
  return createClient(MetaService, createSatchelTransport({ baseUrl: endpoints.metaserver, token, ca: caOf(endpoints) }));
}
