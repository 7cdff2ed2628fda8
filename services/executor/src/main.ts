// Executor process wiring: config, clients, the ExecutorService gRPC server, the Work streams (one
// per queue replica) that run leased items, the admin port, and a graceful stop on SIGTERM.
import { systemClock } from "@stepline/internal/clock";
import { NotFoundError } from "@stepline/internal/errors";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createKafka, topicNames } from "@stepline/internal/kafka";
import { onShutdown, serviceConfig, startAdminServer } from "@stepline/internal/lifecycle";
import { createLogger } from "@stepline/internal/log";
import { createRedis } from "@stepline/internal/redis";
import { retry } from "@stepline/internal/retry";
import { startTelemetry } from "@stepline/internal/telemetry";
import { EventServiceClient } from "@stepline/proto/stepline/eventapi/v1/event_service";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { ExecutorServiceService } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { AnyReplica } from "./any-replica.js";
import { AppClient } from "./app-client.js";
import type { BufferFire } from "./buffer-fire.js";
import { Canceller } from "./cancel.js";
import { Checkpointer } from "./checkpoint.js";
import { loadExecutorConfig } from "./config.js";
import { egressPolicy } from "./egress.js";
import { createItemHandler } from "./execute.js";
import { failRun } from "./finalize.js";
import { HistoryProducer } from "./history.js";
import { grpcEventSender } from "./internal-events.js";
import { LiveRuns } from "./live-runs.js";
import { PauseStore } from "./pauses.js";
import { Resumer } from "./resume.js";
import { Scheduler } from "./schedule.js";
import { executorService } from "./server.js";
import { SigningKeys } from "./signing-keys.js";
import { SingletonLocks } from "./singleton.js";
import { RunStore } from "./state.js";
import { WorkPool } from "./work-pool.js";

const config = serviceConfig("executor", () => loadExecutorConfig(process.env));

const dev = config.STEPLINE_DEV;
const log = createLogger("executor", config.STEPLINE_LOG_LEVEL);
const stopTelemetry = await startTelemetry("stepline-executor", process.env);
const redis = createRedis(config.STEPLINE_REDIS_URL, log.child({ component: "redis" }));
const store = new RunStore(redis, config.STEPLINE_EXECUTOR_STATE_TTL_MS, undefined, {
  maxSteps: config.STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN,
  maxStateBytes: config.STEPLINE_EXECUTOR_MAX_STATE_BYTES,
  maxStepBytes: config.STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES,
  maxCalls: config.STEPLINE_EXECUTOR_MAX_CALLS_PER_RUN,
});
const pauses = new PauseStore(redis);
const live = new LiveRuns(redis);
const kafka = createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-executor", log);
const history = new HistoryProducer(
  kafka,
  {
    topic: topicNames(config.STEPLINE_KAFKA_TOPIC_PREFIX).history,
    timeoutMs: config.STEPLINE_EXECUTOR_HISTORY_TIMEOUT_MS,
    maxBacklogBytes: 64 * 1024 * 1024,
  },
  log.child({ component: "history" }),
);
// One client per queue replica: each schedules only the shards it owns.
const queues = config.STEPLINE_QUEUE_GRPC_ADDR.map((addr) => createClient(QueueServiceClient, addr));
const anyQueue = new AnyReplica(queues);

// Dev mode neither signs calls nor needs tenancy: the SDK in dev mode does not check signatures.
// Cron ticks come due as queue items; the runner (which owns the registry) starts their runs.
const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);
const fireCron = async (req: { environmentId: string; functionId: string; cron: string; tickMs: number }) =>
  callUnary(runner.fireCron.bind(runner), req, config.STEPLINE_EXECUTOR_OP_TIMEOUT_MS);
const fireDebounce = async (req: BufferFire) =>
  callUnary(
    runner.fireDebounce.bind(runner),
    { ...req, debounceId: req.id },
    config.STEPLINE_EXECUTOR_OP_TIMEOUT_MS,
  );
const fireBatch = async (req: BufferFire) =>
  callUnary(
    runner.fireBatch.bind(runner),
    { ...req, batchId: req.id },
    config.STEPLINE_EXECUTOR_OP_TIMEOUT_MS,
  );
const tenants = dev ? null : createClient(TenantServiceClient, config.STEPLINE_EVENT_API_CONTROL_ADDR);
// Stepline's own events (function finished/failed/invoked) go through event-api, like any event.
const eventApi = createClient(EventServiceClient, config.STEPLINE_EVENT_API_GRPC_ADDR);
const events = grpcEventSender(eventApi, config.STEPLINE_EXECUTOR_HISTORY_TIMEOUT_MS);
const keys = tenants
  ? new SigningKeys(
      async (environmentId) => {
        const res = await callUnary(tenants.getEnvironment.bind(tenants), { environmentId });
        const key = res.environment?.signingKey;
        if (!key) throw new NotFoundError(`environment ${environmentId} has no signing key`);
        return key;
      },
      config.STEPLINE_EXECUTOR_KEY_CACHE_MS,
      systemClock,
    )
  : null;

const app = new AppClient({
  timeoutMs: config.STEPLINE_EXECUTOR_REQUEST_TIMEOUT_MS,
  maxResponseBytes: config.STEPLINE_EXECUTOR_MAX_RESPONSE_BYTES,
  serverKind: dev ? "dev" : "cloud",
  egress: egressPolicy({ dev, allow: config.STEPLINE_EXECUTOR_EGRESS_ALLOW }),
});

/** How long a run id skipped by `singleton` is remembered: the runner's 24 h idempotency window. */
const SKIPPED_RUN_TTL_MS = 24 * 60 * 60 * 1000;

const enqueue = async (items: NewItem[]) => {
  await anyQueue.call((queue) => callUnary(queue.enqueue.bind(queue), { items }));
};
const remove = async (items: Array<{ itemId: string; accountId: string }>) => {
  await anyQueue.call((queue) => callUnary(queue.remove.bind(queue), { items }));
};
/** What every end of a run needs (finalize.ts), shared by the work handler, cancels and resumes. */
const singletons = new SingletonLocks(redis);
const ends = { store, pauses, live, events, enqueue, remove, history, singletons, clock: systemClock };
const canceller = new Canceller({ ...ends, log: log.child({ component: "cancel" }) });
const scheduler = new Scheduler({
  store,
  pauses,
  live,
  enqueue,
  produce: (entries) => history.produce(entries),
  record: (entries) => history.record(entries),
  clock: systemClock,
  defaultMaxAttempts: config.STEPLINE_EXECUTOR_DEFAULT_MAX_ATTEMPTS,
  singletons,
  cancel: async (runId, reason) => {
    await canceller.cancel(runId, { reason });
  },
  skipTtlMs: SKIPPED_RUN_TTL_MS,
});

const pool = new WorkPool(
  queues.map((queue) => () => queue.work()),
  createItemHandler({
    ...ends,
    fireCron,
    checkpointing: config.STEPLINE_EXECUTOR_CHECKPOINTING === 1,
    fireDebounce,
    fireBatch,
    app,
    keys,
    log: log.child({ component: "execute" }),
    backoff: {
      baseMs: config.STEPLINE_EXECUTOR_BACKOFF_BASE_MS,
      maxMs: config.STEPLINE_EXECUTOR_BACKOFF_MAX_MS,
    },
  }),
  {
    concurrency: config.STEPLINE_EXECUTOR_CONCURRENCY,
    opTimeoutMs: config.STEPLINE_EXECUTOR_OP_TIMEOUT_MS,
    handOff: config.STEPLINE_EXECUTOR_HAND_OFF === 1,
    releaseBackoff: {
      baseMs: config.STEPLINE_EXECUTOR_BACKOFF_BASE_MS,
      maxMs: config.STEPLINE_EXECUTOR_RELEASE_BACKOFF_MAX_MS,
    },
  },
  log.child({ component: "work" }),
  systemClock,
);

let stopping = false;
const grpcServer = await startGrpcServer(config.STEPLINE_EXECUTOR_GRPC_ADDR, [
  {
    definition: ExecutorServiceService,
    implementation: executorService(
      scheduler,
      new Resumer({
        store,
        pauses,
        enqueue,
        history,
        canceller,
        clock: systemClock,
        log: log.child({ component: "resume" }),
      }),
      canceller,
      new Checkpointer({
        store,
        history,
        clock: systemClock,
        failRun: (runId, message) => failRun(ends, runId, message),
      }),
      log,
    ),
  },
]);
const admin = await startAdminServer(
  config.STEPLINE_ADMIN_PORT,
  () => !stopping && redis.status === "ready" && history.isConnected(),
  config.STEPLINE_ADMIN_HOST,
);
log.info({ grpcPort: grpcServer.port, adminPort: admin.port, dev }, "executor listening");

onShutdown(
  log,
  async () => {
    stopping = true;
    await grpcServer.close();
    await pool.stop(config.STEPLINE_EXECUTOR_SHUTDOWN_GRACE_MS);
    await app.close();
    await history.stop();
    for (const queue of queues) queue.close();
    tenants?.close();
    eventApi.close();
    runner.close();
    await redis.quit();
    await admin.close();
    await stopTelemetry();
  },
  config.STEPLINE_EXECUTOR_SHUTDOWN_GRACE_MS + 8_000,
);

// Kafka may come up after us: keep trying; readiness stays false until it is connected.
await retry(() => history.start(), {
  log,
  what: "connect to Kafka",
  backoff: { firstMs: 200, maxMs: 5_000 },
  shouldContinue: () => !stopping,
});
if (!stopping) {
  pool.start();
  log.info(
    { concurrency: config.STEPLINE_EXECUTOR_CONCURRENCY, queues: config.STEPLINE_QUEUE_GRPC_ADDR },
    "work streams started",
  );
}
