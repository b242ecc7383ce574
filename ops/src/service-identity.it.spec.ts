import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaAdminService, MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { caOf, identityEnv, SERVICE_NAMES, type ServiceName } from "./index.js";

/**
 * Service identities (issue 21): each service calls the others with a credential of its own, and
 * each receiving service lets it call only what that service needs. Every method of every service,
 * on the gRPC and the web port, is called with each service's credential: what the table below
 * does not list is PERMISSION_DENIED before any handler runs (so the empty requests change
 * nothing). The table is written here, apart from the servers' own, so that a server granting
 * more fails this test.
 */
const { endpoints } = inject("cluster");

const SERVERS: Record<ServiceName, DescService[]> = {
  metaserver: [MetaService, MetaAdminService, AuthService],
  blockserver: [BlockService, BlockAdminService],
  notifyserver: [NotifyService],
};
/** What each service's credential may call, anywhere. */
const MAY: Record<ServiceName, string[]> = {
  metaserver: [
    "satchel.block.v1.BlockService/ReserveBlocks",
    "satchel.block.v1.BlockService/AdjustReferences",
    "satchel.block.v1.BlockService/GetBlock",
    "satchel.block.v1.BlockAdminService/InspectBlocks",
    "satchel.block.v1.BlockAdminService/ListReferenceCounts",
    "satchel.block.v1.BlockAdminService/SetReferenceCounts",
  ],
  blockserver: [],
  notifyserver: ["satchel.meta.v1.MetaAdminService/ListMemberships"],
};
/** Methods anyone may call without a credential: a credential changes nothing there. */
const PUBLIC = new Set(["CreateAccount", "Login", "Refresh"].map((m) => `${AuthService.typeName}/${m}`));

function transportOf(port: "grpc" | "web", server: ServiceName, token: string): Transport {
  if (port === "grpc") return createSatchelTransport({ baseUrl: endpoints[server], token });
  const bearer: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req));
  return createConnectTransport({ baseUrl: endpoints.web[server], httpVersion: "1.1", nodeOptions: { ca: caOf(endpoints) }, interceptors: [bearer] });
}

/** The code an empty request to `method` gets ("OK" when it succeeds); a server stream is cancelled after its first message. */
async function codeOf(transport: Transport, service: DescService, method: DescMethod): Promise<Code | "OK"> {
  const client = createClient(service, transport) as unknown as Record<string, (req: object, opts: object) => unknown>;
  const ac = new AbortController();
  try {
    const answer = client[method.localName]({}, { signal: ac.signal, timeoutMs: 10_000 });
    if (method.methodKind === "server_streaming") {
      for await (const _ of answer as AsyncIterable<unknown>) break;
    } else await answer;
    return "OK";
  } catch (err) {
    return ConnectError.from(err).code;
  } finally {
    ac.abort();
  }
}

describe("service identities", () => {
  for (const port of ["grpc", "web"] as const) {
    it(`each service's credential calls only what its service needs, on the ${port} port`, async () => {
      const wrong: string[] = [];
      for (const caller of SERVICE_NAMES) {
        const credential = endpoints.serviceCredentials[caller];
        for (const server of SERVICE_NAMES) {
          for (const service of SERVERS[server]) {
            for (const method of service.methods) {
              const name = `${service.typeName}/${method.name}`;
              if (PUBLIC.has(name)) continue;
              const code = await codeOf(transportOf(port, server, credential), service, method);
              const allowed = MAY[caller].includes(name);
              // An allowed call may still fail on its empty request (INVALID_ARGUMENT), never for who called.
              const ok = allowed ? code !== Code.PermissionDenied && code !== Code.Unauthenticated : code === Code.PermissionDenied;
              if (!ok) wrong.push(`${caller} → ${name}: ${code === "OK" ? "OK" : Code[code]} (${allowed ? "allowed" : "not allowed"})`);
            }
          }
        }
      }
      expect(wrong).toEqual([]);
    }, 120_000);
  }

  it("a refusal names whose credential it was and what to use instead", async () => {
    const notify = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceCredentials.notifyserver }));
    const err = ConnectError.from(await notify.adjustReferences({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toMatch(/AdjustReferences is not for the notifyserver's credential: .*operators use the operator's credential/);
  });

  it("the operator's credential calls the admin methods of every service; a credential of no one is UNAUTHENTICATED", async () => {
    const operator = (server: ServiceName) => createSatchelTransport({ baseUrl: endpoints[server], token: endpoints.serviceToken });
    await expect(createClient(BlockAdminService, operator("blockserver")).getScrubStatus({})).resolves.toBeDefined();
    await expect(createClient(BlockAdminService, operator("blockserver")).listReferenceCounts({ pageSize: 1 })).resolves.toBeDefined();
    await expect(createClient(MetaAdminService, operator("metaserver")).listMemberships({ userIds: [1n] })).resolves.toBeDefined();
    // The single shared token of earlier releases had this form: one made up now names no one.
    for (const server of SERVICE_NAMES) {
      const [service] = SERVERS[server];
      const stranger = createSatchelTransport({ baseUrl: endpoints[server], token: "svc-made-up-shared-token" });
      expect(await codeOf(stranger, service, service.methods[0]), server).toBe(Code.Unauthenticated);
    }
  });

  it("a service process is given its own credential and only digests of the others'", () => {
    for (const service of SERVICE_NAMES) {
      const env = JSON.stringify(identityEnv(endpoints, service));
      expect(env).toContain(endpoints.serviceCredentials[service]);
      for (const other of [...SERVICE_NAMES.filter((s) => s !== service).map((s) => endpoints.serviceCredentials[s]), endpoints.serviceToken]) {
        expect(env, `${service} holds another's credential`).not.toContain(other);
      }
    }
  });
});
