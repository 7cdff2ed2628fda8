import { createClient } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { LeasedItem, WorkResponse } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { globalKeys } from "./keys.js";
import { staticLimitsSource } from "./limits.js";
import { Queue } from "./queue.js";
import { Scripts } from "./scripts.js";
import type { RunningQueueService } from "./service.js";
import { startQueueService } from "./service.js";
import { dropNamespace, testNamespace, testRedis } from "./testing/redis.js";
import { WakeBus } from "./wake.js";

const log = createLogger("queue-test", "silent");
let redis: Redis;
let ns: string;
let service: RunningQueueService;

beforeAll(async () => {
  redis = testRedis();
  ns = testNamespace();
  service = await startQueueService(
    redis,
    {
      grpcAddr: "127.0.0.1:0",
      namespace: ns,
      leaseMs: 30_000,
      maxDeliveries: 20,
      seenTtlMs: 60_000,
      claimBatch: 16,
      ownerLeaseMs: 10_000,
      // No sweep during the test: only the wake message can make the owner look.
      sweepMs: 600_000,
      limits: staticLimitsSource(),
      limitsTtlMs: 0,
      shards: 4,
    },
    log,
  );
});

afterAll(async () => {
  await service?.stop();
  await dropNamespace(redis, ns);
  await redis.quit();
});

it("hands out an item enqueued through another replica at once, woken by pub/sub rather than the sweep", async () => {
  const client = createClient(QueueServiceClient, `127.0.0.1:${service.port}`);
  const got: LeasedItem[] = [];
  const stream = client.work();
  stream.on("data", (res: WorkResponse) => {
    if (res.response?.$case === "items") got.push(...res.response.value.items);
  });
  stream.on("error", () => undefined);
  stream.write({ request: { $case: "credits", value: { count: 1 } } });
  // Let the owner settle into its sleep with credits and nothing due.
  const shard = service.queue.shardOf("acct-remote");
  await waitFor("the owner to own the shard", () => (service.ownership.has(shard) ? true : undefined));

  // A replica that does not own the shard: it publishes a wake-up when it moves the due time earlier.
  const other = new WakeBus(redis, globalKeys(ns).wakeChannel, log);
  const remote = new Queue(
    new Scripts(redis),
    { namespace: ns, leaseMs: 30_000, maxDeliveries: 20, seenTtlMs: 60_000, shards: 4 },
    (c) => {
      if (c.afterMs >= 0 && (c.beforeMs < 0 || c.afterMs < c.beforeMs)) other.publish(c.shard, c.afterMs);
    },
  );
  await remote.enqueue([
    {
      id: "remote-1",
      runId: "run-remote",
      accountId: "acct-remote",
      environmentId: "env",
      functionId: "fn",
      kind: ItemKind.ITEM_KIND_START,
      delayMs: 0,
      runAtMs: 0,
      attempt: 0,
      payload: "{}",
    },
  ]);
  const leased = await waitFor("the item", () => got[0], { timeoutMs: 3_000 });
  expect(leased.item?.id).toBe("remote-1");
  stream.end();
  client.close();
  await other.stop();
});
