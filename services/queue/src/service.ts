// Builds and starts the queue's parts (shared by main.ts and the gRPC-level tests): scripts,
// queue, executor dispatcher, scheduler, shard ownership, cross-replica wake-ups, gRPC server.
import { randomBytes } from "node:crypto";
import { startGrpcServer } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import { QueueServiceService } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import { globalKeys } from "./keys.js";
import { Dispatcher } from "./lease-stream.js";
import type { FlowLimitsSource } from "./limits.js";
import { LimitsCache } from "./limits.js";
import { Ownership } from "./ownership.js";
import { Queue } from "./queue.js";
import { Scheduler } from "./scheduler.js";
import type { ScriptOptions } from "./scripts.js";
import { Scripts } from "./scripts.js";
import { queueService } from "./server.js";
import { WakeBus } from "./wake.js";

export interface QueueServiceOptions {
  grpcAddr: string;
  namespace: string;
  leaseMs: number;
  maxDeliveries: number;
  seenTtlMs: number;
  claimBatch: number;
  ownerLeaseMs: number;
  sweepMs: number;
  /** Where the functions' concurrency and throttle limits come from (the runner). */
  limits: FlowLimitsSource;
  limitsTtlMs: number;
  /** Virtual shards (tests may use fewer). */
  shards?: number;
  scriptOptions?: ScriptOptions;
}

export interface RunningQueueService {
  port: number;
  queue: Queue;
  ownership: Ownership;
  /** True once this replica took part in shard ownership. */
  ready(): boolean;
  /** Stops claiming, ends the executor streams, releases the shards, closes the server. */
  stop(): Promise<void>;
}

/** Starts a queue replica on `redis`. */
export async function startQueueService(
  redis: Redis,
  options: QueueServiceOptions,
  log: Logger,
): Promise<RunningQueueService> {
  const token = `${process.pid}-${randomBytes(8).toString("hex")}`;
  const scripts = new Scripts(redis, options.scriptOptions);
  const wake = new WakeBus(redis, globalKeys(options.namespace).wakeChannel, log);
  let scheduler: Scheduler | undefined;
  let ownership: Ownership | undefined;
  const queue = new Queue(scripts, { ...options }, (change) => {
    if (change.afterMs < 0 || !scheduler || !ownership) return;
    if (ownership.has(change.shard)) {
      scheduler.noteNow(change.nowMs);
      scheduler.noteDue(change.shard, change.afterMs, change.ready);
    } else if (change.beforeMs < 0 || change.afterMs < change.beforeMs) {
      wake.publish(change.shard, change.afterMs);
    }
  });
  const dispatcher = new Dispatcher(() => scheduler?.wake());
  let lastLimitsError = 0;
  const limits = new LimitsCache(options.limits, options.limitsTtlMs, undefined, (err) => {
    // At most one line a minute while the runner is unreachable.
    if (Date.now() - lastLimitsError < 60_000) return;
    lastLimitsError = Date.now();
    log.warn({ err }, "cannot read flow-control limits; limited partitions wait until the runner answers");
  });
  scheduler = new Scheduler(
    queue,
    dispatcher,
    { token, claimBatch: options.claimBatch, sweepMs: options.sweepMs, leaseMs: options.leaseMs },
    log.child({ component: "scheduler" }),
    limits,
  );
  const sched = scheduler;
  ownership = new Ownership(
    scripts,
    queue,
    { namespace: options.namespace, token, leaseMs: options.ownerLeaseMs },
    { acquired: (s) => sched.adopt(s), lost: (s) => sched.drop(s) },
    log.child({ component: "ownership" }),
  );
  // Bind first: a replica that cannot listen must not take shard leases it would then hold,
  // unserved, until they expire.
  const server = await startGrpcServer(options.grpcAddr, [
    { definition: QueueServiceService, implementation: queueService(queue, dispatcher, log) },
  ]);
  await wake.start((shard, due) => sched.noteDue(shard, due));
  await ownership.start();
  sched.start();
  log.info({ port: server.port, shards: ownership.count() }, "queue service started");
  const owner = ownership;
  return {
    port: server.port,
    queue,
    ownership: owner,
    ready: () => redis.status === "ready",
    stop: async () => {
      await sched.stop();
      dispatcher.endAll();
      await server.close(2_000);
      await owner.stop();
      await wake.stop();
    },
  };
}
