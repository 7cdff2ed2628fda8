import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { partitionId } from "./keys.js";
import { Queue } from "./queue.js";
import type { ScriptName } from "./scripts.js";
import { Scripts } from "./scripts.js";
import type { ItemInput, LeasedItem } from "./store.js";
import { acquireOwner } from "./store.js";
import { shardProblems } from "./testing/invariants.js";
import { countSocketWrites, dropNamespace, testNamespace, testRedis } from "./testing/redis.js";

const TOKEN = "queue-test";
let redis: Redis;
let ns: string;
let queue: Queue;
const calls: Array<{ name: ScriptName; keys: readonly string[] }> = [];

function item(id: string, over: Partial<ItemInput> = {}): ItemInput {
  return {
    id,
    runId: `run-${id}`,
    accountId: "acct",
    environmentId: "env",
    functionId: "fn",
    kind: 2,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: "{}",
    ...over,
  };
}

async function leaseAll(n: number): Promise<LeasedItem[]> {
  const r = await queue.claim(0, TOKEN, "acct", [{ pid: partitionId("env", "fn"), cap: n }], n);
  expect(r.leased).toHaveLength(n);
  return r.leased;
}

const ref = (l: LeasedItem) => ({ itemId: l.id, accountId: l.accountId, generation: l.generation });

beforeAll(() => {
  redis = testRedis();
});
afterAll(async () => {
  await redis.quit();
});
beforeEach(async () => {
  ns = testNamespace();
  calls.length = 0;
  const scripts = new Scripts(redis, {
    assertSlots: true,
    onCall: (name, keys) => calls.push({ name, keys }),
  });
  queue = new Queue(scripts, {
    namespace: ns,
    leaseMs: 30_000,
    maxDeliveries: 5,
    seenTtlMs: 60_000,
    shards: 1,
  });
  await acquireOwner(scripts, queue.keys(0), TOKEN, 60_000);
});
afterEach(async () => {
  await dropNamespace(redis, ns);
});

describe("Queue", () => {
  it("reads every shard's earliest due time and lease expiry in one write (the sweep)", async () => {
    const client = testRedis();
    try {
      await client.ping();
      const reader = new Queue(new Scripts(client), {
        namespace: ns,
        leaseMs: 30_000,
        maxDeliveries: 5,
        seenTtlMs: 60_000,
        // Shard 0's keys are the same in both queues: the items below land there.
        shards: 256,
      });
      const laterMs = Date.now() + 60_000;
      await queue.enqueue([item("now"), item("later", { runAtMs: laterMs })]);
      const [leased] = await leaseAll(1);
      const writes = countSocketWrites(client);
      const heads = await reader.heads(Array.from({ length: 256 }, (_, shard) => shard));
      expect(writes.count).toBe(1);
      expect(heads).toHaveLength(256);
      expect(heads[0]).toEqual({ dueMs: laterMs, expiryMs: leased?.leaseExpiresAtMs });
      expect(heads.slice(1).every((h) => h.dueMs === Infinity && h.expiryMs === Infinity)).toBe(true);
    } finally {
      await client.quit();
    }
  });

  it("splits completions so that no script call adds more than 256 items", async () => {
    await queue.enqueue([item("s1"), item("s2"), item("s3")]);
    const leases = await leaseAll(3);
    const out = await queue.complete(
      leases.map((l) => ({
        lease: ref(l),
        next: Array.from({ length: 100 }, (_, j) => item(`${l.id}:n${j}`)),
      })),
    );
    expect(out.map((o) => o.ok)).toEqual([true, true, true]);
    const completes = calls.filter((c) => c.name === "complete");
    for (const c of completes)
      expect(c.keys.filter((k) => k.includes(":p:")).length).toBeLessThanOrEqual(256);
    expect(await redis.zcard(queue.keys(0).partition("acct", partitionId("env", "fn")))).toBe(300);
    expect(await shardProblems(redis, queue.keys(0))).toEqual([]);
  });

  it("refuses an invalid op on its own and still applies the valid ops of the same batch", async () => {
    await queue.enqueue([item("a"), item("b"), item("c"), item("d")]);
    const [a, b, c, d] = (await leaseAll(4)) as [LeasedItem, LeasedItem, LeasedItem, LeasedItem];
    const completed = await queue.complete([
      { lease: ref(a), next: [item("a2")] },
      { lease: ref(b), next: [item("", { payload: "x" })] },
      { lease: { itemId: "", accountId: "", generation: 0 }, next: [] },
    ]);
    expect(completed.map((o) => o.ok)).toEqual([true, false, false]);
    expect(completed[1]?.invalid).toMatch(/id is required/);
    expect(completed[2]?.invalid).toMatch(/item_id and account_id/);
    // The refused completion changed nothing: b is still leased with its generation.
    expect((await queue.extend([ref(b)]))[0]?.ok).toBe(true);

    const retried = await queue.retry([
      { lease: ref(c), runAtMs: 0, attempt: 1 },
      { lease: ref(d), runAtMs: 9_000_000_000_000, attempt: 1 },
      { lease: ref(b), runAtMs: 0, attempt: -1 },
    ]);
    expect(retried.map((o) => o.ok)).toEqual([true, false, false]);
    expect(retried[1]?.invalid).toMatch(/too late/);
    const extended = await queue.extend([ref(d), { itemId: "d", accountId: "", generation: 1 }]);
    expect(extended.map((o) => o.ok)).toEqual([true, false]);
    expect(extended[1]?.invalid).toBeDefined();
    expect(await shardProblems(redis, queue.keys(0))).toEqual([]);
  });
});
