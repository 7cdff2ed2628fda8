import { callUnary, createClient } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { LeasedItem, WorkResponse } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { globalKeys } from "./keys.js";
import { staticLimitsSource } from "./limits.js";
import { startQueueService } from "./service.js";
import { dropNamespace, testNamespace, testRedis } from "./testing/redis.js";

const log = createLogger("queue-test", "silent");
let redis: Redis;
let ns: string;

beforeAll(() => {
  redis = testRedis();
  ns = testNamespace();
});
afterAll(async () => {
  await dropNamespace(redis, ns);
  await redis.quit();
});

it("on stop ends the executor streams, releases every shard and leaves the membership", async () => {
  const service = await startQueueService(
    redis,
    {
      grpcAddr: "127.0.0.1:0",
      namespace: ns,
      leaseMs: 30_000,
      maxDeliveries: 20,
      seenTtlMs: 60_000,
      claimBatch: 16,
      ownerLeaseMs: 10_000,
      sweepMs: 5_000,
      limits: staticLimitsSource(),
      limitsTtlMs: 0,
      shards: 4,
    },
    log,
  );
  const client = createClient(QueueServiceClient, `127.0.0.1:${service.port}`);
  const got: LeasedItem[] = [];
  const stream = client.work();
  const ended = new Promise<void>((resolve) => {
    stream.on("end", () => resolve());
    stream.on("error", () => resolve());
  });
  stream.on("data", (res: WorkResponse) => {
    if (res.response?.$case === "items") got.push(...res.response.value.items);
  });
  stream.write({ request: { $case: "credits", value: { count: 5 } } });
  await callUnary(client.enqueue.bind(client), {
    items: [
      {
        id: "stop-1",
        runId: "run-stop",
        accountId: "acct-stop",
        environmentId: "env",
        functionId: "fn",
        kind: ItemKind.ITEM_KIND_START,
        delayMs: 0,
        runAtMs: 0,
        attempt: 0,
        flow: undefined,
        runStartedAtMs: 0,
        traceParent: "",
        payload: "{}",
      },
    ],
  });
  await waitFor("the item", () => got[0]);
  expect(service.ownership.count()).toBe(4);

  await service.stop();
  await ended;
  const owners = await Promise.all([0, 1, 2, 3].map((s) => redis.get(service.queue.keys(s).owner)));
  expect(owners).toEqual([null, null, null, null]);
  expect(await redis.zcard(globalKeys(ns).members)).toBe(0);
  expect(service.ownership.count()).toBe(0);
  // The delivered item stays leased for its executor, which may complete it through any replica.
  expect(
    await redis.zscore(service.queue.keys(service.queue.shardOf("acct-stop")).leased, "stop-1"),
  ).not.toBeNull();
  client.close();
});
