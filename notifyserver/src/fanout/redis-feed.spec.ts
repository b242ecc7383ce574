import { describe, expect, it } from "vitest";
import { parseAdvance } from "./redis-feed.js";

describe("the fan-out's Redis feed", () => {
  it("reads a namespace advance as the metaserver publishes it, ids and cursors beyond 2^53 exactly", () => {
    expect(parseAdvance('{"namespaceId":"9007199254740993","cursor":"42","at":1796100000000}'))
      .toEqual({ namespaceId: 9007199254740993n, cursor: 42n, at: 1796100000000 });
    expect(parseAdvance('{"namespaceId":"7","cursor":"1"}')).toEqual({ namespaceId: 7n, cursor: 1n, at: 0 });
  });

  it("takes what is not an advance as nothing, never as a crash", () => {
    for (const raw of ["", "not json", '{"namespaceId":"x","cursor":"1"}', '{"cursor":"1"}']) expect(parseAdvance(raw), raw).toBeUndefined();
  });
});
