import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { callUnary, createClient } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type { NewItem, WorkRequest, WorkResponse } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Queue as BullQueue, Worker as BullWorker } from "bullmq";
import { Redis } from "ioredis";
import { staticLimitsSource } from "./limits.js";
import { dropNamespace, startRedisServer } from "./redis-server.js";
import { startQueueService } from "./service.js";

const { values: args } = parseArgs({
  options: {
    items: { type: "string", default: "20000" },
    noisy: { type: "string", default: "100000" },
    redis: { type: "string" },
  },
});
const ITEMS = Number(args.items);
const NOISY = Number(args.noisy);
const BATCH = 500;
const CREDITS = 512;
const log = createLogger("queue-bench", "warn");

// A private redis-server, or the one named by --redis.
const ownRedis = args.redis ? null : await startRedisServer();
const redisUrl = args.redis ?? ownRedis?.url ?? "";
const redis = new Redis(redisUrl);
const namespace = `bench${randomBytes(4).toString("hex")}:`;
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

function item(id: string, accountId: string, functionId: string): NewItem {
  return {
    id,
    runId: id,
    accountId,
    environmentId: "env",
    functionId,
    kind: ItemKind.ITEM_KIND_START,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: "{}",
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
  };
}

/** N items over `accounts` accounts with `fns` functions each. */
function spread(prefix: string, n: number, accounts: number, fns: number): NewItem[] {
  return Array.from({ length: n }, (_, i) => {
    const a = i % accounts;
    return item(`${prefix}-${i}`, `acct-${a}`, `fn-${Math.floor(i / accounts) % fns}`);
  });
}

async function enqueueAll(items: NewItem[]): Promise<void> {
  const batches: NewItem[][] = [];
  for (let i = 0; i < items.length; i += BATCH) batches.push(items.slice(i, i + BATCH));
  // A few calls in flight, like several runner and executor replicas.
  for (let i = 0; i < batches.length; i += 4) {
    await Promise.all(
      batches.slice(i, i + 4).map((b) => callUnary(client.enqueue.bind(client), { items: b })),
    );
  }
}

/**
 * An executor stream: acks every leased item at once (no-op work) and grants the credit back.
 * `onLeased` sees each item as it arrives.
 */
function worker(onLeased: (items: NewItem[]) => void = () => {}) {
  const stream = client.work();
  let batchId = 0;
  let acked = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  stream.on("data", (res: WorkResponse) => {
    if (res.response?.$case === "items") {
      const leased = res.response.value.items;
      onLeased(leased.flatMap((l) => (l.item ? [l.item] : [])));
      const items = leased.map((l) => ({
        lease: {
          itemId: l.item?.id ?? "",
          accountId: l.item?.accountId ?? "",
          generation: l.generation,
          partitionId: l.partitionId,
        },
        next: [],
        handOff: false,
      }));
      stream.write({
        request: { $case: "complete", value: { batchId: ++batchId, items } },
      } satisfies WorkRequest);
    } else if (res.response?.$case === "results") {
      const n = res.response.value.results.length;
      acked += n;
      stream.write({ request: { $case: "credits", value: { count: n } } } satisfies WorkRequest);
      for (const w of [...waiters]) {
        if (acked >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  stream.write({ request: { $case: "credits", value: { count: CREDITS } } } satisfies WorkRequest);
  return {
    /** Resolves once `n` acks in all were answered. */
    acked: (n: number) =>
      new Promise<void>((resolve) => {
        if (acked >= n) resolve();
        else waiters.push({ n, resolve });
      }),
    close: () => stream.end(),
  };
}

/** Stepline: items/s from the first enqueue to the last ack. */
async function stepline(items: NewItem[]): Promise<number> {
  const w = worker();
  const t0 = performance.now();
  await enqueueAll(items);
  await w.acked(items.length);
  const ms = performance.now() - t0;
  w.close();
  return rate(items.length, ms);
}

/** BullMQ: the same loop (addBulk in batches, one Worker acking at once) on the same Redis. */
async function bullmq(n: number): Promise<number> {
  const connection = { url: redisUrl, maxRetriesPerRequest: null };
  const name = `bench-${randomBytes(4).toString("hex")}`;
  const queue = new BullQueue(name, { connection });
  let done = 0;
  let finish: () => void = () => {};
  const all = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const w = new BullWorker(name, async () => undefined, {
    connection,
    concurrency: CREDITS,
    removeOnComplete: { count: 0 },
  });
  w.on("completed", () => {
    if (++done >= n) finish();
  });
  await w.waitUntilReady();
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH * 4) {
    const calls: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(n, i + BATCH * 4); j += BATCH) {
      const jobs = Array.from({ length: Math.min(BATCH, n - j) }, (_, k) => ({
        name: "job",
        data: { n: j + k },
        opts: { removeOnComplete: true },
      }));
      calls.push(queue.addBulk(jobs));
    }
    await Promise.all(calls);
  }
  await all;
  const ms = performance.now() - t0;
  await w.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return rate(n, ms);
}

/** The quiet account's start delays while the noisy one's backlog drains. */
async function noisyNeighbour(): Promise<{ p50: number; p99: number; quiet: number; noisyPerSec: number }> {
  const sentAt = new Map<string, number>();
  const delays: number[] = [];
  let noisyDone = 0;
  const w = worker((items) => {
    const now = performance.now();
    for (const it of items) {
      const t = sentAt.get(it.id);
      if (t !== undefined) delays.push(now - t);
      else noisyDone++;
    }
  });
  await enqueueAll(Array.from({ length: NOISY }, (_, i) => item(`noisy-${i}`, "noisy", `fn-${i % 5}`)));
  const t0 = performance.now();
  const before = noisyDone;
  let q = 0;
  while (performance.now() - t0 < 5_000) {
    const id = `quiet-${q++}`;
    sentAt.set(id, performance.now());
    await callUnary(client.enqueue.bind(client), { items: [item(id, "quiet", "fn-q")] });
    await new Promise((r) => setTimeout(r, 20));
  }
  await waitFor("the quiet items", () => delays.length >= q, { timeoutMs: 60_000 });
  const noisyPerSec = rate(noisyDone - before, performance.now() - t0);
  w.close();
  delays.sort((a, b) => a - b);
  const pct = (p: number) =>
    Math.round((delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? 0) * 10) / 10;
  return { p50: pct(0.5), p99: pct(0.99), quiet: delays.length, noisyPerSec };
}

/**
 * An idle queue, one item at a time (a new run's start item when the cluster is not busy): from
 * the Enqueue call to the item reaching the executor's stream, with a pause between items so the
 * scheduler is asleep when each one comes.
 */
async function idleHandOut(): Promise<{ p50: number; p99: number; items: number }> {
  let arrived: ((at: number) => void) | undefined;
  const w = worker((items) => {
    if (items.length > 0) arrived?.(performance.now());
  });
  const delays: number[] = [];
  for (let i = 0; i < 400; i++) {
    const got = new Promise<number>((resolve) => {
      arrived = resolve;
    });
    const t0 = performance.now();
    await callUnary(client.enqueue.bind(client), { items: [item(`idle-${i}`, "idle", "fn")] });
    delays.push((await got) - t0);
    await new Promise((r) => setTimeout(r, 5));
  }
  w.close();
  delays.sort((a, b) => a - b);
  const pct = (p: number) =>
    Math.round((delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? 0) * 100) / 100;
  return { p50: pct(0.5), p99: pct(0.99), items: delays.length };
}

function rate(n: number, ms: number): number {
  return Math.round((n / ms) * 1000);
}

function print(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

try {
  // A warm-up of each, so neither pays for script loading or JIT in the measured run.
  await stepline(spread("warm", 2_000, 10, 3));
  await bullmq(2_000);

  const s1 = await stepline(spread("a", ITEMS, 10, 3));
  const b1 = await bullmq(ITEMS);
  print({
    case: "10 accounts x 3 functions",
    items: ITEMS,
    steplinePerSec: s1,
    bullmqPerSec: b1,
    ratio: Math.round((s1 / b1) * 100) / 100,
  });

  const s2 = await stepline(spread("b", ITEMS, 1_000, 10));
  const b2 = await bullmq(ITEMS);
  print({
    case: "1,000 accounts x 10 functions",
    items: ITEMS,
    steplinePerSec: s2,
    bullmqPerSec: b2,
    ratio: Math.round((s2 / b2) * 100) / 100,
  });

  const idle = await idleHandOut();
  print({
    case: "idle queue, one item at a time",
    items: idle.items,
    enqueueToHandOutMs: { p50: idle.p50, p99: idle.p99 },
  });

  const n = await noisyNeighbour();
  print({
    case: "noisy neighbour",
    noisyQueued: NOISY,
    quietItems: n.quiet,
    quietStartDelayMs: { p50: n.p50, p99: n.p99 },
    noisyPerSec: n.noisyPerSec,
  });
} finally {
  client.close();
  await service.stop();
  if (ownRedis) ownRedis.stop();
  else await dropNamespace(redis, namespace);
  redis.disconnect();
}
