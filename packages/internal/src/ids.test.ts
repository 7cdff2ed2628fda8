import { describe, expect, it } from "vitest";
import { isUlid, newId, ulidTime, ulidTimePrefix } from "./ids.js";

describe("newId", () => {
  it("makes well-formed, distinct ULIDs that sort in the order they were made", () => {
    const before = Date.now();
    const ids = Array.from({ length: 20_000 }, () => newId());
    expect(ids.every(isUlid)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    const at = ulidTime(ids[0] as string) as number;
    expect(at).toBeGreaterThanOrEqual(before);
    expect((ids[0] as string) >= ulidTimePrefix(before)).toBe(true);
  });

  it("draws every character of the random part from the whole alphabet, evenly", () => {
    // A new millisecond draws all 16 random characters afresh; within one, the id only increments.
    // The first random character of ids made in different milliseconds is a fresh draw each time.
    const counts = new Map<string, number>();
    let last = -1;
    let draws = 0;
    const deadline = Date.now() + 5_000;
    while (draws < 400 && Date.now() < deadline) {
      const id = newId();
      const ms = ulidTime(id) as number;
      if (ms === last) continue;
      last = ms;
      for (const c of id.slice(10, 25)) counts.set(c, (counts.get(c) ?? 0) + 1);
      draws++;
    }
    expect(draws).toBeGreaterThan(100);
    expect(counts.size).toBe(32);
    const expected = (draws * 15) / 32;
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(expected * 0.6);
      expect(n).toBeLessThan(expected * 1.4);
    }
  });
});
