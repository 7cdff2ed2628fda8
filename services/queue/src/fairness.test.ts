import { describe, expect, it } from "vitest";
import { AccountDrr, partitionShares } from "./fairness.js";

describe("AccountDrr", () => {
  it("serves a waiting account within two rounds even when another has a huge backlog", () => {
    const drr = new AccountDrr(64);
    const first = drr.plan(["big", "small"], 10, 64);
    expect(first.reduce((n, s) => n + s.count, 0)).toBe(10);
    for (const s of first) drr.charge(s.accountId, s.count, s.count);
    const served = new Set(first.map((s) => s.accountId));
    if (!served.has("small")) {
      const second = drr.plan(["big", "small"], 10, 64);
      expect(second[0]?.accountId).toBe("small");
    }
  });

  it("shares the budget evenly between two busy accounts over many rounds", () => {
    const drr = new AccountDrr(16);
    const got = new Map<string, number>();
    for (let round = 0; round < 100; round++) {
      for (const s of drr.plan(["a", "b", "c"], 10, 16)) {
        drr.charge(s.accountId, s.count, s.count);
        got.set(s.accountId, (got.get(s.accountId) ?? 0) + s.count);
      }
    }
    const counts = [...got.values()];
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(16);
  });

  it("banks nothing for an account that could not fill its request", () => {
    const drr = new AccountDrr(8);
    drr.plan(["a"], 100, 8);
    drr.charge("a", 8, 3);
    expect(drr.deficit("a")).toBe(0);
  });

  it("forgets accounts that are no longer ready", () => {
    const drr = new AccountDrr(8);
    drr.plan(["a", "b"], 1, 8);
    drr.plan(["b"], 1, 8);
    expect(drr.deficit("a")).toBe(0);
  });
});

describe("partitionShares", () => {
  it("rotates the partitions and caps each at an even share", () => {
    expect(partitionShares([{ pid: "x" }, { pid: "y" }, { pid: "z" }], 10, 4)).toEqual([
      { pid: "y", cap: 4 },
      { pid: "z", cap: 4 },
      { pid: "x", cap: 4 },
    ]);
    expect(partitionShares([], 10, 0)).toEqual([]);
  });
});
