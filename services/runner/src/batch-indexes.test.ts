import { describe, expect, it } from "vitest";
import { BatchIndexes } from "./batch-indexes.js";
import type { FunctionIndex } from "./match.js";
import type { StoredFunction } from "./model.js";

/** A registry whose Redis is a map of environment -> (version, functions), counting its reads. */
function registryOf(envs: Record<string, { version: string; fns: StoredFunction[] }>) {
  const cache = new Map<string, { version: string; fns: StoredFunction[] }>();
  const reads: string[][] = [];
  return {
    reads,
    envs,
    cached: (env: string) => cache.get(env),
    loadMany: async (ids: Iterable<string>) => {
      const list = [...ids];
      reads.push(list);
      const out = new Map<string, StoredFunction[]>();
      for (const id of list) {
        const now = envs[id];
        if (!now) {
          out.set(id, []);
          continue;
        }
        const hit = cache.get(id);
        const fns = hit?.version === now.version ? hit.fns : now.fns;
        cache.set(id, { version: now.version, fns });
        out.set(id, fns);
      }
      return out;
    },
  };
}

const fnList = (id: string): StoredFunction[] => [
  { accountId: "a", appId: "app", fn: { id } } as StoredFunction,
];
const indexes = new WeakMap<StoredFunction[], FunctionIndex>();
const indexOf = (fns: StoredFunction[]) => {
  const index = indexes.get(fns) ?? ({ fns } as unknown as FunctionIndex);
  indexes.set(fns, index);
  return index;
};

/** A batch over e1 and e2, whose functions the registry holds at version 1. */
async function cachedBatch() {
  const reg = registryOf({
    e1: { version: "1", fns: fnList("f1") },
    e2: { version: "1", fns: fnList("f2") },
  });
  await reg.loadMany(["e1", "e2"]);
  const batch = new BatchIndexes(reg, indexOf);
  await batch.prepare(["e1", "e2"]);
  return { reg, batch };
}

describe("BatchIndexes", () => {
  it("matches against a cached copy without reading Redis, and loads only what is not cached", async () => {
    const reg = registryOf({
      e1: { version: "1", fns: fnList("f1") },
      e2: { version: "1", fns: fnList("f2") },
    });
    await reg.loadMany(["e1"]);
    const batch = new BatchIndexes(reg, indexOf);
    await batch.prepare(["e1", "e2"]);
    expect(reg.reads).toEqual([["e1"], ["e2"]]);
    expect(batch.uncheckedVersion("e1")).toBe("1");
    expect(batch.uncheckedVersion("e2")).toBeUndefined();
    await batch.prepare(["e1", "e2"]);
    expect(reg.reads).toHaveLength(2);
  });

  it("reads only unchecked versions, and replaces and names the indexes that changed", async () => {
    const { reg, batch } = await cachedBatch();
    const before = batch.indexes.get("e2");
    reg.envs.e2 = { version: "2", fns: fnList("f2b") };
    expect(await batch.check(["e1", "e2"])).toEqual(["e2"]);
    expect(batch.indexes.get("e2")).not.toBe(before);
    expect(batch.uncheckedVersion("e1")).toBeUndefined();
    expect(await batch.check(["e1", "e2"])).toEqual([]);
    expect(reg.reads).toHaveLength(2);
  });

  it("loads again what admit.lua found changed, and reads nothing for what it confirmed", async () => {
    const { reg, batch } = await cachedBatch();
    reg.envs.e1 = { version: "2", fns: fnList("f1b") };
    batch.checked(["e2"]);
    batch.drop(["e1"]);
    await batch.prepare(["e1", "e2"]);
    expect(reg.reads).toEqual([["e1", "e2"], ["e1"]]);
    expect(batch.indexes.get("e1")).toBe(indexOf(reg.envs.e1.fns));
    expect(await batch.check(["e1", "e2"])).toEqual([]);
  });
});
