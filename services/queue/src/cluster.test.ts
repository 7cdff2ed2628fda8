import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "@stepline/internal/testing";
import type { Redis } from "ioredis";
import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionId, shardKeys } from "./keys.js";
import type { FunctionLimits } from "./limits.js";
import type { FlowInput } from "./partitions.js";
import { partitionOf } from "./partitions.js";
import { Queue } from "./queue.js";
import type { ScriptName } from "./scripts.js";
import { Scripts } from "./scripts.js";
import type { ItemInput, LeasedItem } from "./store.js";
import { acquireOwner, releaseOwner } from "./store.js";
import type { RedisServer } from "./testing/redis.js";
import { startRedisServer, testNamespace } from "./testing/redis.js";

const TOKEN = "cluster-test";
const SHARDS = 16;
const ACCOUNTS = Array.from({ length: 24 }, (_, i) => `acct-${i}`);
const LIMITED: FlowInput = {
  concurrency: [
    { scope: 1, keyHash: "" },
    { scope: 2, keyHash: "ab12" },
  ],
  throttled: true,
  throttleKeyHash: "cd34",
  priorityS: 5,
};
const LIMITS: FunctionLimits = {
  concurrency: [
    { scope: "f", keyed: false, limit: 100 },
    { scope: "e", keyed: true, limit: 100 },
  ],
  throttle: { limit: 1_000, periodMs: 1_000, burst: 100 },
};

let dir: string;
const nodes: RedisServer[] = [];
let cluster: Cluster;
let queue: Queue;
const calls: Array<{ name: ScriptName; keys: readonly string[] }> = [];

function item(id: string, accountId: string, over: Partial<ItemInput> = {}): ItemInput {
  return {
    id,
    runId: `run-${id}`,
    accountId,
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

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "stepline-cluster-"));
  for (let i = 0; i < 3; i++) {
    // The bus port is named, as the data port is: the default (port + 10000) may be taken.
    const node = await startRedisServer([
      "--cluster-port",
      String(await freePort()),
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      join(dir, `nodes-${i}.conf`),
      "--dir",
      dir,
    ]);
    nodes.push(node);
  }
  const ports = nodes.map((n) => n.port);
  execFileSync("redis-cli", [
    "--cluster",
    "create",
    ...ports.map((p) => `127.0.0.1:${p}`),
    "--cluster-replicas",
    "0",
    "--cluster-yes",
  ]);
  await waitFor("the cluster to be ok", () =>
    ports.every((p) =>
      execFileSync("redis-cli", ["-p", String(p), "cluster", "info"])
        .toString()
        .includes("cluster_state:ok"),
    ),
  );
  cluster = new Cluster(
    ports.map((port) => ({ host: "127.0.0.1", port })),
    { redisOptions: { maxRetriesPerRequest: 2 } },
  );
  // ioredis' Cluster has the command surface the queue uses (scripts, sorted sets, hashes).
  const scripts = new Scripts(cluster as unknown as Redis, {
    assertSlots: true,
    onCall: (name, keys) => calls.push({ name, keys }),
  });
  queue = new Queue(scripts, {
    namespace: testNamespace(),
    leaseMs: 30_000,
    maxDeliveries: 20,
    seenTtlMs: 60_000,
    shards: SHARDS,
  });
  for (let s = 0; s < SHARDS; s++) await acquireOwner(scripts, queue.keys(s), TOKEN, 60_000);
}, 60_000);

afterAll(async () => {
  await cluster?.quit().catch(() => undefined);
  for (const n of nodes) n.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the queue on Redis Cluster", () => {
  it("refuses a script call whose keys span two shards (so the check below can fail)", async () => {
    const a = shardKeys("x:", 1).items;
    const b = shardKeys("x:", 2).items;
    await expect(cluster.eval("return 1", 2, a, b)).rejects.toThrow(/CROSSSLOT/);
  });

  it("runs every script over shards on every master without a CROSSSLOT error", async () => {
    const shardsUsed = new Set(ACCOUNTS.map((a) => queue.shardOf(a)));
    expect(shardsUsed.size).toBeGreaterThan(3);
    const plain = ACCOUNTS.flatMap((a) => [
      item(`${a}-1`, a),
      item(`${a}-2`, a),
      item(`${a}-later`, a, { delayMs: 60_000 }),
    ]);
    const limited = ACCOUNTS.map((a) => item(`${a}-start`, a, { kind: 1, flow: LIMITED }));
    expect(await queue.enqueue([...plain, ...limited])).toEqual(
      new Array(plain.length + limited.length).fill("enqueued"),
    );

    const leased: LeasedItem[] = [];
    for (const a of ACCOUNTS) {
      const shard = queue.shardOf(a);
      const r = await queue.claim(
        shard,
        TOKEN,
        a,
        [
          { pid: partitionId("env", "fn"), cap: 10 },
          { pid: partitionOf("env", "fn", LIMITED, true), cap: 10, limits: LIMITS },
        ],
        10,
      );
      leased.push(...r.leased);
    }
    expect(leased).toHaveLength(ACCOUNTS.length * 3);
    const ref = (l: LeasedItem) => ({
      itemId: l.id,
      accountId: l.accountId,
      generation: l.generation,
      partitionId: l.partitionId,
    });
    const [toRetry, ...rest] = [
      leased.filter((l) => l.id.endsWith("-1")),
      leased.filter((l) => !l.id.endsWith("-1")),
    ];
    expect((await queue.extend(leased.map(ref))).every((o) => o.ok)).toBe(true);
    expect(
      (await queue.retry((toRetry ?? []).map((l) => ({ lease: ref(l), runAtMs: 0, attempt: 1 })))).every(
        (o) => o.ok,
      ),
    ).toBe(true);
    const done = await queue.complete(
      (rest[0] ?? []).map((l) => ({
        lease: ref(l),
        next: [item(`${l.id}-next`, l.accountId, { flow: LIMITED })],
      })),
    );
    expect(done.every((o) => o.ok)).toBe(true);
    expect(
      (await queue.remove(ACCOUNTS.map((a) => ({ itemId: `${a}-later`, accountId: a })))).every(
        (o) => o === "removed",
      ),
    ).toBe(true);
    for (const a of ACCOUNTS.slice(0, 4)) {
      const fn = { accountId: a, environmentId: "env", functionId: "fn" };
      expect(await queue.pause(fn)).toBe(true);
      expect(await queue.paused([fn])).toEqual([true]);
      expect(await queue.resume(fn)).toBe(true);
    }
    for (let s = 0; s < SHARDS; s++) {
      const exp = await queue.expired(s, 10);
      await queue.reclaim(s, TOKEN, exp.leases);
      expect(await queue.heads([s])).toHaveLength(1);
    }
    const scripts = new Scripts(cluster as unknown as Redis);
    expect(await releaseOwner(scripts, queue.keys(0), TOKEN)).toBe(true);
    const used = new Set(calls.map((c) => c.name));
    for (const name of [
      "enqueue",
      "claim",
      "extend",
      "retry",
      "complete",
      "remove",
      "pause",
      "resume",
      "expired",
    ] as const) {
      expect(used, name).toContain(name);
    }
  });
});
