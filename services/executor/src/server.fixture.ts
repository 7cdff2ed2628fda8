// Test support (not part of the build's runtime): ExecutorService over gRPC on port 0, backed by
// real Redis state and recording doubles for the queue, history and EventService, shared by the
// server tests (server.test.ts, server-control.test.ts).
import { systemClock } from "@stepline/internal/clock";
import { UnavailableError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import {
  ExecutorServiceClient,
  ExecutorServiceService,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Redis } from "ioredis";
import { Canceller } from "./cancel.js";
import { Checkpointer } from "./checkpoint.js";
import type { FinalizeDeps } from "./finalize.js";
import { failRun } from "./finalize.js";
import type { HistoryEntry } from "./history.js";
import { LiveRuns } from "./live-runs.js";
import { PauseStore } from "./pauses.js";
import { Resumer } from "./resume.js";
import { Scheduler } from "./schedule.js";
import { executorService } from "./server.js";
import { SingletonLocks } from "./singleton.js";
import { RunStore } from "./state.js";

export interface SentEvent {
  name: string;
  id: string;
  data: { run_id: string; _inngest: { status: string } };
}

/** What the doubles recorded since the last reset; `enqueueFails` makes the queue double fail. */
export interface Recorded {
  sent: SentEvent[];
  removed: string[];
  enqueued: NewItem[];
  produced: HistoryEntry[];
  enqueueFails: boolean;
}

export interface ExecutorHarness {
  redis: Redis;
  prefix: string;
  store: RunStore;
  pauses: PauseStore;
  live: LiveRuns;
  client: ExecutorServiceClient;
  rec: Recorded;
  /** A valid RunSpec with a fresh run id. */
  spec(over?: Partial<RunSpec>): RunSpec;
  /** Empties the recordings and lets the queue double work again. */
  reset(): void;
  stop(): Promise<void>;
}

export async function startExecutorHarness(): Promise<ExecutorHarness> {
  const redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const prefix = `test-sched-${uniqueTag()}:s:`;
  const store = new RunStore(redis, 60_000, prefix);
  const pauses = new PauseStore(redis, prefix);
  const live = new LiveRuns(redis, prefix);
  const rec: Recorded = { sent: [], removed: [], enqueued: [], produced: [], enqueueFails: false };
  const enqueue = async (items: NewItem[]) => {
    if (rec.enqueueFails) throw new UnavailableError("queue down");
    rec.enqueued.push(...items);
  };
  const record = async (entries: HistoryEntry[]) => void rec.produced.push(...entries);
  const log = createLogger("executor-test", "silent");
  const singletons = new SingletonLocks(redis, prefix);
  let canceller: Canceller | undefined;
  const scheduler = new Scheduler({
    store,
    pauses,
    live,
    enqueueStarts: (starts) => enqueue(starts.map((s) => s.item)),
    produce: record,
    record,
    clock: systemClock,
    defaultMaxAttempts: 5,
    singletons,
    cancel: async (runId, reason) => {
      await canceller?.cancel(runId, { reason });
    },
    skipTtlMs: 60_000,
  });
  // What follows a run's end, recorded.
  const ends: FinalizeDeps = {
    store,
    pauses,
    live,
    events: { send: async (_a, _e, events) => void rec.sent.push(...(events as unknown as SentEvent[])) },
    enqueue,
    remove: async (items) => void rec.removed.push(...items.map((i) => i.itemId)),
    history: { record, produce: record },
    singletons,
    clock: systemClock,
  };
  canceller = new Canceller({ ...ends, log });
  const resumer = new Resumer({
    store,
    pauses,
    enqueue,
    history: { record },
    canceller,
    clock: systemClock,
    log,
  });
  const checkpointer = new Checkpointer({
    store,
    history: { record },
    clock: systemClock,
    failRun: (runId, message) => failRun(ends, runId, message),
  });
  const server: GrpcServer = await startGrpcServer("127.0.0.1:0", [
    {
      definition: ExecutorServiceService,
      implementation: executorService(scheduler, resumer, canceller, checkpointer, log),
    },
  ]);
  const client = createClient(ExecutorServiceClient, `127.0.0.1:${server.port}`);
  let n = 0;
  return {
    redis,
    prefix,
    store,
    pauses,
    live,
    client,
    rec,
    spec(over = {}) {
      n++;
      return {
        runId: `01J0000000000000000000RUN${n}`,
        accountId: "acct",
        environmentId: "env",
        appId: "app",
        functionId: "app-fn",
        functionVersion: "1",
        url: "http://127.0.0.1:3000/api/inngest?fnId=app-fn&stepId=step",
        maxAttempts: 3,
        eventsJson: ['{"name":"x","id":"e1","data":{"b":1,"a":2},"ts":5}'],
        cancelOn: [],
        startTimeoutMs: 0,
        finishTimeoutMs: 0,
        flow: undefined,
        singleton: undefined,
        traceParent: "",
        ...over,
      };
    },
    reset() {
      rec.sent = [];
      rec.removed = [];
      rec.enqueued = [];
      rec.produced = [];
      rec.enqueueFails = false;
    },
    async stop() {
      client.close();
      await server.close();
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}
