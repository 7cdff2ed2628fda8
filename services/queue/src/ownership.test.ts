import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { globalKeys, shardKeys } from "./keys.js";
import { Ownership, preferredShards } from "./ownership.js";
import { Queue } from "./queue.js";
import { Scripts } from "./scripts.js";
import { countSocketWrites, dropNamespace, testNamespace, testRedis } from "./testing/redis.js";

const log = createLogger("queue-test", "silent");
let redis: Redis;
const namespaces: string[] = [];
const started: Ownership[] = [];

beforeAll(() => {
  redis = testRedis();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((o) => o.stop()));
  await Promise.all(namespaces.splice(0).map((ns) => dropNamespace(redis, ns)));
});
afterAll(async () => {
  await redis.quit();
});

function replica(
  ns: string,
  token: string,
  held: Set<number>,
  opts: { client?: Redis; shards?: number; ownerLeaseMs?: number } = {},
) {
  const scripts = new Scripts(opts.client ?? redis);
  const queue = new Queue(scripts, {
    namespace: ns,
    leaseMs: 1_000,
    maxDeliveries: 5,
    seenTtlMs: 1_000,
    shards: opts.shards ?? 16,
  });
  const o = new Ownership(
    scripts,
    queue,
    { namespace: ns, token, leaseMs: opts.ownerLeaseMs ?? 900 },
    { acquired: (s) => held.add(s), lost: (s) => held.delete(s) },
    log,
  );
  started.push(o);
  return o;
}

describe("preferredShards", () => {
  it("gives each shard to exactly one member", () => {
    const members = ["a", "b", "c"];
    const all = members.flatMap((m) => preferredShards(m, members, 256));
    expect(all.sort((x, y) => x - y)).toEqual(Array.from({ length: 256 }, (_, i) => i));
    for (const m of members) expect(preferredShards(m, members, 256).length).toBeGreaterThan(50);
  });
});

describe("Ownership", () => {
  it("lets one replica own every shard, splits them when a second joins, and takes them back when it leaves", async () => {
    const ns = testNamespace();
    namespaces.push(ns);
    const heldA = new Set<number>();
    const heldB = new Set<number>();
    const a = replica(ns, "replica-a", heldA);
    await a.start();
    expect(heldA.size).toBe(16);

    const b = replica(ns, "replica-b", heldB);
    await b.start();
    await waitFor("the shards to be split", () =>
      heldA.size > 0 && heldB.size > 0 && heldA.size + heldB.size === 16 ? true : undefined,
    );
    for (const s of heldB) expect(heldA.has(s)).toBe(false);
    for (const s of heldB) expect(await redis.get(shardKeys(ns, s).owner)).toBe("replica-b");

    await b.stop();
    started.splice(started.indexOf(b), 1);
    expect(heldB.size).toBe(0);
    await waitFor("replica a to own every shard again", () => (heldA.size === 16 ? true : undefined));
  });

  it("renews all 256 shards in a round of three writes to Redis (time, membership, one pipeline of renewals)", async () => {
    const ns = testNamespace();
    namespaces.push(ns);
    const client = testRedis();
    try {
      await client.ping();
      const held = new Set<number>();
      // A long lease: no timed round runs during the test, only the ones it starts.
      const o = replica(ns, "replica-a", held, { client, shards: 256, ownerLeaseMs: 600_000 });
      await o.start();
      expect(held.size).toBe(256);
      const writes = countSocketWrites(client);
      await o.tick();
      expect(writes.count).toBe(3);
      expect(held.size).toBe(256);
      expect(await redis.pttl(shardKeys(ns, 255).owner)).toBeGreaterThan(500_000);
      await o.stop();
      started.splice(started.indexOf(o), 1);
      expect(await redis.get(shardKeys(ns, 255).owner)).toBeNull();
    } finally {
      await client.quit();
    }
  });

  it("on stop releases every shard it holds and leaves the membership, even with a round in flight", async () => {
    const ns = testNamespace();
    namespaces.push(ns);
    const held = new Set<number>();
    const a = replica(ns, "replica-a", held);
    // Stop while the first round is between its heartbeat and taking the shards.
    const round = a.tick();
    await a.stop();
    await round;
    const owners = await Promise.all(Array.from({ length: 16 }, (_, s) => redis.get(shardKeys(ns, s).owner)));
    expect(owners.filter((o) => o !== null)).toEqual([]);
    expect(await redis.zrange(globalKeys(ns).members, 0, "-1")).toEqual([]);
    expect(held.size).toBe(0);

    const b = replica(ns, "replica-b", new Set());
    await b.start();
    expect(b.count()).toBe(16);
  });
});
