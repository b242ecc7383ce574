import { describe, expect, it } from "vitest";
import { checkServiceCredentials, credentialDigest, credentialDigests, identify, servicePermits, SERVICE_IDENTITIES } from "./service-identity.js";

describe("service identities", () => {
  const credentials = credentialDigests({ metaserver: "m-secret", blockserver: "b-secret", notifyserver: "n-secret", operator: "o-secret" });

  it("a credential names its service; anything else, and a digest sent as a token, names none", () => {
    expect(identify("m-secret", credentials)).toBe("metaserver");
    expect(identify("b-secret", credentials)).toBe("blockserver");
    expect(identify("n-secret", credentials)).toBe("notifyserver");
    expect(identify("o-secret", credentials)).toBe("operator");
    for (const other of ["", "m-secreT", "o-secret ", credentialDigest("o-secret")]) expect(identify(other, credentials)).toBeUndefined();
    // A service that accepts only some callers names only those.
    expect(identify("o-secret", { metaserver: credentials.metaserver })).toBeUndefined();
  });

  it("digests are SHA-256 hex, and the JSON form round-trips through the check", () => {
    expect(credentialDigest("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(checkServiceCredentials(JSON.parse(JSON.stringify(credentials)))).toEqual(credentials);
    expect(Object.keys(credentials)).toEqual([...SERVICE_IDENTITIES]);
  });

  it("a service calls only what its table lists, by service or by method; the operator calls anything", () => {
    const table = { metaserver: ["pkg.Block/Adjust", "pkg.BlockAdmin"], notifyserver: ["pkg.MetaAdmin/ListMemberships"] };
    expect(servicePermits(table, "metaserver", "pkg.Block", "pkg.Block/Adjust")).toBe(true);
    expect(servicePermits(table, "metaserver", "pkg.BlockAdmin", "pkg.BlockAdmin/RunGc")).toBe(true);
    expect(servicePermits(table, "metaserver", "pkg.Block", "pkg.Block/Get")).toBe(false);
    expect(servicePermits(table, "notifyserver", "pkg.Block", "pkg.Block/Adjust")).toBe(false);
    expect(servicePermits(table, "notifyserver", "pkg.MetaAdmin", "pkg.MetaAdmin/SetQuota")).toBe(false);
    expect(servicePermits(table, "blockserver", "pkg.Block", "pkg.Block/Adjust")).toBe(false);
    expect(servicePermits(table, "operator", "pkg.Anything", "pkg.Anything/At-all")).toBe(true);
  });
});
