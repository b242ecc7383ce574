import { describe, expect, it } from "vitest";
import { senderOf, statementsIn } from "./commit-profile.js";

describe("the commit profile's reading of MariaDB's general log", () => {
  it("names the service behind a statement by the tables it touches", () => {
    expect(senderOf("UPDATE blocks SET reserved_until = NOW(3) + INTERVAL 3600 SECOND WHERE hash IN (X'00')")).toBe("blockserver");
    expect(senderOf("SELECT namespace_id, path, role FROM mounts WHERE user_id = 3")).toBe("metaserver, directory");
    expect(senderOf("SELECT outbox_id, hash, delta FROM block_reference_outbox ORDER BY outbox_id LIMIT 500")).toBe("metaserver, reference relay");
    expect(senderOf("INSERT INTO files (namespace_id) VALUES (1);\nINSERT INTO block_reference_outbox (hash, delta) VALUES (X'00', 1);\nCOMMIT")).toBe("metaserver, shard");
    expect(senderOf("COMMIT")).toBe("?");
  });

  it("counts the statements of a multi-statement round trip", () => {
    expect(statementsIn("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION;\n SELECT 1 FROM namespace_state FOR UPDATE")).toBe(3);
    expect(statementsIn("INSERT INTO files VALUES ('a;b');\nINSERT INTO journal VALUES (1);\nCOMMIT")).toBe(3);
    expect(statementsIn("SELECT 1")).toBe(1);
  });
});
