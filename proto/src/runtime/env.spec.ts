import { describe, expect, it } from "vitest";
import { serviceBasics } from "./env.js";
import { credentialDigests } from "./service-identity.js";
import { generateTokenKey, publicTokenKeys } from "./tokens.js";

describe("service settings", () => {
  const key = generateTokenKey("k1");
  const every = credentialDigests({ metaserver: "svc", blockserver: "svc", notifyserver: "svc" });
  const env = (keys: object, credentials: object = every, token = "svc") =>
    ({ SATCHEL_SERVICE_TOKEN: token, SATCHEL_SERVICE_CREDENTIALS: JSON.stringify(credentials), SATCHEL_TOKEN_KEYS: JSON.stringify(keys), SATCHEL_PLAINTEXT: "on" });

  it("only the metaserver may hold a private token key: any other service refuses to start with one", () => {
    expect(serviceBasics(env([key]), "metaserver", 7300).tokenKeys[0].d).toBe(key.d);
    for (const service of ["blockserver", "notifyserver"]) {
      expect(() => serviceBasics(env([key]), service, 7301)).toThrow(/private key \("d"\): only the metaserver may; give the .* public keys/);
      expect(serviceBasics(env(publicTokenKeys([key])), service, 7301).tokenKeys).toEqual([{ kid: "k1", x: key.x }]);
    }
  });

  it("a service starts only with its own credential, listed by digest among those it accepts", () => {
    const pub = publicTokenKeys([key]);
    const creds = credentialDigests({ metaserver: "meta-secret", notifyserver: "notify-secret", operator: "op-secret" });
    expect(serviceBasics(env(pub, creds, "notify-secret"), "notifyserver", 7302).serviceCredentials).toEqual(creds);
    // Another service's credential, or the operator's, is not this one's.
    expect(() => serviceBasics(env(pub, creds, "meta-secret"), "notifyserver", 7302)).toThrow(/SATCHEL_SERVICE_TOKEN is not the notifyserver's credential/);
    expect(() => serviceBasics(env(pub, creds, "op-secret"), "notifyserver", 7302)).toThrow(/not the notifyserver's credential/);
    expect(() => serviceBasics(env(pub, creds, "x"), "blockserver", 7302)).toThrow(/has no "blockserver"/);
    expect(() => serviceBasics(env(pub, { notifyserver: "notify-secret" }, "notify-secret"), "notifyserver", 7302)).toThrow(/SHA-256 .* not the credential/);
    expect(() => serviceBasics(env(pub, { gateway: creds.operator }, "x"), "notifyserver", 7302)).toThrow(/names "gateway"/);
    expect(() => serviceBasics(env(pub, [], "x"), "notifyserver", 7302)).toThrow(/must be a JSON object/);
  });
});
