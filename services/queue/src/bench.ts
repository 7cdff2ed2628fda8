// A small benchmark (not part of the service): one in-process queue replica and one executor
// stream on the same Node process, against a real Redis, in a fresh key namespace.
// Usage: node services/queue/dist/bench.js redis://127.0.0.1:26379 [items=20000] [accounts=10]
// Prints enqueue rate, lease->complete rate, and a chain (complete enqueues the next step).
import { randomBytes } from "node:crypto";
import { callUnary, createClient } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import type { NewItem, WorkRequest, WorkResponse } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Redis } from "ioredis";
import { staticLimitsSource } from "./limits.js";
import { startQueueService } from "./service.js";

const [url = "redis://127.0.0.1:6379", itemsArg = "20000", accountsArg = "10"] = process.argv.slice(2);
const total = Number(itemsArg);
const accounts = Number(accountsArg);
const log = createLogger("queue-bench", "warn");
const redis = new Redis(url);
const namespace = `bench${randomBytes(4).toString("hex")}:`;

function item(id: string, n: number, step = 0): NewItem {
  return {
    id,
    runId: `run-${n}`,
    accountId: `acct-${n % accounts}`,
    environmentId: "env",
    functionId: `fn-${n % 3}`,
    kind: step === 0 ? ItemKind.ITEM_KIND_START : ItemKind.ITEM_KIND_STEP,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: JSON.stringify({ stepId: `s${step}` }),
    flow: undefined,
  };
}

const service = await startQueueService(
  redis,
  {
    grpcAddr: "127.0.0.1:0",
    namespace,
    leaseMs: 30_000,
    maxDeliveries: 20,
    seenTtlMs: 60_000,
    claimBatch: 64,
    ownerLeaseMs: 10_000,
    sweepMs: 5_000,
    limits: staticLimitsSource(),
    limitsTtlMs: 2_000,
  },
  log,
);
const client = createClient(QueueServiceClient, `127.0.0.1:${service.port}`);

async function enqueueAll(items: NewItem[]): Promise<number> {
  const t0 = performance.now();
  const batches: NewItem[][] = [];
  for (let i = 0; i < items.length; i += 500) batches.push(items.slice(i, i + 500));
  // A few enqueue calls in flight, like several runner consumers.
  for (let i = 0; i < batches.length; i += 4) {
    await Promise.all(
      batches.slice(i, i + 4).map((b) => callUnary(client.enqueue.bind(client), { items: b })),
    );
  }
  return performance.now() - t0;
}

/** Works until `expected` completions were acknowledged; `steps` > 1 chains next items. */
function work(expected: number, steps: number, credits = 512): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const stream = client.work();
    let done = 0;
    let batchId = 0;
    const send = (req: WorkRequest) => stream.write(req);
    stream.on("data", (res: WorkResponse) => {
      if (res.response?.$case === "items") {
        const items = res.response.value.items.map((l) => {
          const it = l.item as NewItem;
          const step = Number(it.id.split(":s")[1] ?? 0);
          const n = Number(it.runId.slice(4));
          const next = step + 1 < steps ? [item(`${it.runId}:s${step + 1}`, n, step + 1)] : [];
          const lease = {
            itemId: it.id,
            accountId: it.accountId,
            generation: l.generation,
            partitionId: l.partitionId,
          };
          return { lease, next };
        });
        send({ request: { $case: "complete", value: { batchId: ++batchId, items } } });
      } else if (res.response?.$case === "results") {
        const n = res.response.value.results.length;
        done += n;
        send({ request: { $case: "credits", value: { count: n } } });
        if (done >= expected) {
          stream.end();
          resolve(performance.now() - t0);
        }
      }
    });
    send({ request: { $case: "credits", value: { count: credits } } });
  });
}

const flat = Array.from({ length: total }, (_, i) => item(`run-${i}:s0`, i));
const enqMs = await enqueueAll(flat);
const workMs = await work(total, 1);
const runs = Math.floor(total / 5);
const chainEnqMs = await enqueueAll(
  Array.from({ length: runs }, (_, i) => item(`run-${total + i}:s0`, total + i)),
);
const chainMs = await work(runs * 5, 5);
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);
process.stdout.write(
  `${JSON.stringify({
    items: total,
    accounts,
    enqueuePerSec: rate(total, enqMs),
    leaseCompletePerSec: rate(total, workMs),
    chain: { runs, steps: 5, stepsPerSec: rate(runs * 5, chainMs), enqueueMs: Math.round(chainEnqMs) },
  })}\n`,
);
client.close();
await service.stop();
let cursor = "0";
do {
  const [next, keys] = await redis.scan(cursor, "MATCH", `q:{${namespace}*`, "COUNT", 1000);
  cursor = next;
  if (keys.length > 0) await redis.del(...keys);
} while (cursor !== "0");
await redis.quit();
