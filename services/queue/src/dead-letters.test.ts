// Dead letters through the Queue, against a real Redis: listing across shards and accounts, and
// redrive (claim.lua's notice and redrive.lua). The scripts' own codes are in store.test.ts.
import { ValidationError } from "@stepline/internal/errors";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { partitionId } from "./keys.js";
import { Queue } from "./queue.js";
import { Scripts } from "./scripts.js";
import type { ItemInput } from "./store.js";
import { acquireOwner } from "./store.js";
import { shardProblems } from "./testing/invariants.js";
import { dropNamespace, testNamespace, testRedis } from "./testing/redis.js";
import { item as fixtureItem } from "./testing/script-fixture.js";

const TOKEN = "dead-letters-test";
const LEASE_MS = 30_000;
let redis: Redis;
let ns: string;
let scripts: Scripts;
let queue: Queue;
let now: number;

/** An item of its own function, `fn-<id>` (so each test claims only its own). */
const item = (id: string, accountId: string, over: Partial<ItemInput> = {}) =>
  fixtureItem(id, { accountId, functionId: `fn-${id}`, payload: "{}", ...over });

/** A claim of one function's items (each test item has a function of its own: fn-<id>). */
function claim(accountId: string, id: string) {
  const pid = partitionId("env", `fn-${id}`);
  return queue.claim(queue.shardOf(accountId), TOKEN, accountId, [{ pid, cap: 10 }], 10);
}

/** Enqueues an item and lets its one allowed delivery expire, so the next claim dead-letters it. */
async function deadLetter(id: string, accountId: string, over: Partial<ItemInput> = {}): Promise<void> {
  await queue.enqueue([item(id, accountId, over)]);
  const shard = queue.shardOf(accountId);
  await acquireOwner(scripts, queue.keys(shard), TOKEN, 600_000);
  expect((await claim(accountId, id)).leased.map((l) => l.id)).toEqual([id]);
  now += LEASE_MS + 1;
  await queue.reclaim(shard, TOKEN, (await queue.expired(shard, 100)).leases);
  expect((await claim(accountId, id)).deadLettered).toEqual([id]);
  now += 1;
}

async function expectConsistent(accountIds: string[]): Promise<void> {
  for (const shard of new Set(accountIds.map((a) => queue.shardOf(a))))
    expect(await shardProblems(redis, queue.keys(shard))).toEqual([]);
}

beforeAll(() => {
  redis = testRedis();
});
afterAll(async () => {
  await redis.quit();
});
beforeEach(() => {
  ns = testNamespace();
  now = 1_700_000_000_000;
  scripts = new Scripts(redis, { assertSlots: true, nowMs: () => now });
  queue = new Queue(scripts, {
    namespace: ns,
    leaseMs: LEASE_MS,
    maxDeliveries: 1,
    seenTtlMs: 60_000,
    shards: 8,
  });
});
afterEach(async () => {
  await dropNamespace(redis, ns);
});

describe("dead letters", () => {
  it("lists them oldest first across shards, of one account when asked, within the limit", async () => {
    const accounts = ["acct-a", "acct-b", "acct-c"];
    expect(new Set(accounts.map((a) => queue.shardOf(a))).size).toBeGreaterThan(1);
    await deadLetter("a1", "acct-a");
    await deadLetter("b1", "acct-b");
    await deadLetter("c1", "acct-c", { kind: 3 });
    await deadLetter("a2", "acct-a");
    const all = await queue.deadLetters("", 100);
    expect(all.items.map((d) => [d.itemId, d.accountId, d.runId, d.kind, d.deliveries])).toEqual([
      ["a1", "acct-a", "run-a1", 2, 2],
      ["b1", "acct-b", "run-b1", 2, 2],
      ["c1", "acct-c", "run-c1", 3, 2],
      ["a2", "acct-a", "run-a2", 2, 2],
    ]);
    expect(all.more).toBe(false);
    expect((await queue.deadLetters("acct-a", 100)).items.map((d) => d.itemId)).toEqual(["a1", "a2"]);
    const first = await queue.deadLetters("", 2);
    expect([first.items.map((d) => d.itemId), first.more]).toEqual([["a1", "b1"], true]);
    const mine = await queue.deadLetters("acct-a", 1);
    expect([mine.items.map((d) => d.itemId), mine.more]).toEqual([["a1"], true]);
    await expect(queue.deadLetters("", 0)).rejects.toThrow(ValidationError);
    await expect(queue.deadLetters("", 1_001)).rejects.toThrow(/limit must be 1\.\.1000/);
  });

  it("redrives an item due now with a fresh delivery count, dropping its notice that was not taken yet", async () => {
    await deadLetter("s1", "acct-a");
    const [done] = await queue.redrive([{ itemId: "s1", accountId: "acct-a" }]);
    expect(done).toBe(true);
    // The run goes on as if the item had never died: no notice is handed out, only the item.
    const back = await claim("acct-a", "s1");
    expect(back.leased.map((l) => [l.id, l.kind, l.releases])).toEqual([["s1", 2, 0]]);
    expect(back.deadLettered).toEqual([]);
    expect((await queue.deadLetters("", 100)).items).toEqual([]);
    // Redriven once: not dead any more.
    expect(await queue.redrive([{ itemId: "s1", accountId: "acct-a" }])).toEqual([false]);
    await expectConsistent(["acct-a"]);
  });

  it("leaves a notice already taken to its holder, and refuses ids of another account or unknown ones", async () => {
    await deadLetter("s1", "acct-a");
    const notice = await claim("acct-a", "s1");
    expect(notice.leased.map((l) => [l.id, l.kind])).toEqual([["s1~dead", 6]]);
    expect(
      await queue.redrive([
        { itemId: "s1", accountId: "acct-b" },
        { itemId: "nope", accountId: "acct-a" },
      ]),
    ).toEqual([false, false]);
    expect(await queue.redrive([{ itemId: "s1", accountId: "acct-a" }])).toEqual([true]);
    // The notice stays leased (its holder fails the run; the redriven item is then acked).
    expect(await redis.zscore(queue.keys(queue.shardOf("acct-a")).leased, "s1~dead")).not.toBeNull();
    expect((await claim("acct-a", "s1")).leased.map((l) => l.id)).toEqual(["s1"]);
    await expect(queue.redrive([{ itemId: "", accountId: "acct-a" }])).rejects.toThrow(
      /every item needs item_id and account_id/,
    );
    await expectConsistent(["acct-a"]);
  });
});
