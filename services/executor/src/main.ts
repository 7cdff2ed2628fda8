// Executor process wiring: clients, the ExecutorService gRPC server, and the Work streams (one
// per queue replica) that run leased items.
import { systemClock } from "@stepline/internal/clock";
import { egressPolicy } from "@stepline/internal/egress";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { topicNames } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import { runService } from "@stepline/internal/lifecycle";
import { createRedis } from "@stepline/internal/redis";
import { retry } from "@stepline/internal/retry";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { ExecutorServiceService } from "@stepline/proto/stepline/executor/v1/executor_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { AppClient } from "./app-client.js";
import { Canceller } from "./cancel.js";
import { Checkpointer } from "./checkpoint.js";
import { loadExecutorConfig } from "./config.js";
import { createItemHandler } from "./execute.js";
import { failRun } from "./finalize.js";
import { HandOffStates } from "./hand-off-states.js";
import { HistoryProducer } from "./history.js";
import { kafkaEventSender } from "./internal-events.js";
import { LiveRuns } from "./live-runs.js";
import { PauseStore } from "./pauses.js";
import { queueCalls, runnerFires, tenantSigningKeys } from "./peers.js";
import { Resumer } from "./resume.js";
import { Scheduler } from "./schedule.js";
import { executorService } from "./server.js";
import { SingletonLocks } from "./singleton.js";
import { RunStore } from "./state.js";
import { WorkPool } from "./work-pool.js";

/** Step records wait this long for others to share their Kafka request (history.ts). */
const HISTORY_LINGER_MS = 20;

/** How long a run id skipped by `singleton` is remembered: the runner's 24 h idempotency window. */
const SKIPPED_RUN_TTL_MS = 24 * 60 * 60 * 1000;

runService(
  {
    name: "executor",
    config: (env) => loadExecutorConfig(env),
    // Items in flight get their grace; the clients after them a few seconds more.
    shutdownDeadlineMs: (config) => config.STEPLINE_EXECUTOR_SHUTDOWN_GRACE_MS + 8_000,
    async start({ config, log, stopping, onStop, readyWhen }) {
      const dev = config.STEPLINE_DEV;
      const opTimeoutMs = config.STEPLINE_EXECUTOR_OP_TIMEOUT_MS;
      const redis = createRedis(config.STEPLINE_REDIS_URL, log.child({ component: "redis" }));
      onStop(() => redis.quit());
      const store = new RunStore(redis, config.STEPLINE_EXECUTOR_STATE_TTL_MS, undefined, {
        maxSteps: config.STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN,
        maxStateBytes: config.STEPLINE_EXECUTOR_MAX_STATE_BYTES,
        maxStepBytes: config.STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES,
        maxCalls: config.STEPLINE_EXECUTOR_MAX_CALLS_PER_RUN,
      });
      const pauses = new PauseStore(redis);
      const live = new LiveRuns(redis);
      const singletons = new SingletonLocks(redis);

      // One client per queue replica: each work stream takes the items of the shards it owns.
      const queues = config.STEPLINE_QUEUE_GRPC_ADDR.map((addr) => createClient(QueueServiceClient, addr));
      // Cron ticks, debounces and batches come due as queue items; the runner starts their runs.
      const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);
      // Dev mode neither signs calls nor needs tenancy: the SDK in dev mode does not check signatures.
      const tenants = dev ? null : createClient(TenantServiceClient, config.STEPLINE_EVENT_API_CONTROL_ADDR);
      onStop(() => {
        for (const queue of queues) queue.close();
        runner.close();
        tenants?.close();
      });

      const topics = topicNames(config.STEPLINE_KAFKA_TOPIC_PREFIX);
      // History records and Stepline's own events (function finished/failed/invoked), on one client.
      const history = new HistoryProducer(
        createProducer({ brokers: config.STEPLINE_KAFKA_BROKERS, clientId: "stepline-executor" }),
        {
          topic: topics.history,
          eventsTopic: topics.events,
          timeoutMs: config.STEPLINE_EXECUTOR_HISTORY_TIMEOUT_MS,
          maxBacklogBytes: 64 * 1024 * 1024,
          lingerMs: HISTORY_LINGER_MS,
        },
        log.child({ component: "history" }),
      );
      onStop(() => history.stop());
      const app = new AppClient({
        timeoutMs: config.STEPLINE_EXECUTOR_REQUEST_TIMEOUT_MS,
        maxResponseBytes: config.STEPLINE_EXECUTOR_MAX_RESPONSE_BYTES,
        serverKind: dev ? "dev" : "cloud",
        egress: egressPolicy({ dev, allow: config.STEPLINE_EXECUTOR_EGRESS_ALLOW }),
      });
      onStop(() => app.close());

      const queueOps = queueCalls(queues, opTimeoutMs, log.child({ component: "queue" }));
      onStop(() => queueOps.close());
      const { enqueue, remove } = queueOps;
      const events = kafkaEventSender((records) => history.produceEvents(records), systemClock);
      /** What every end of a run needs (finalize.ts), shared by the work handler, cancels and resumes. */
      const ends = { store, pauses, live, events, enqueue, remove, history, singletons, clock: systemClock };
      const canceller = new Canceller({ ...ends, log: log.child({ component: "cancel" }) });
      const backoff = { baseMs: config.STEPLINE_EXECUTOR_BACKOFF_BASE_MS };
      // Run states kept for hand-offs: a completion's, and a new run's for its start (WorkPool).
      const handOffs = new HandOffStates(systemClock);
      const pool = new WorkPool(
        queues.map((queue) => () => queue.work()),
        createItemHandler({
          ...ends,
          ...runnerFires(runner, opTimeoutMs),
          checkpointing: config.STEPLINE_EXECUTOR_CHECKPOINTING === 1,
          callsPerLease: config.STEPLINE_EXECUTOR_CALLS_PER_LEASE,
          app,
          keys: tenants
            ? tenantSigningKeys(tenants, config.STEPLINE_EXECUTOR_KEY_CACHE_MS, systemClock)
            : null,
          log: log.child({ component: "execute" }),
          backoff: { ...backoff, maxMs: config.STEPLINE_EXECUTOR_BACKOFF_MAX_MS },
          handOffs,
        }),
        {
          concurrency: config.STEPLINE_EXECUTOR_CONCURRENCY,
          opTimeoutMs,
          handOff: config.STEPLINE_EXECUTOR_HAND_OFF === 1,
          releaseBackoff: { ...backoff, maxMs: config.STEPLINE_EXECUTOR_RELEASE_BACKOFF_MAX_MS },
          states: handOffs,
        },
        log.child({ component: "work" }),
        systemClock,
      );
      const scheduler = new Scheduler({
        store,
        pauses,
        live,
        enqueueStarts: (starts) => pool.enqueueStarts(starts, enqueue),
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
      const resumer = new Resumer({
        store,
        pauses,
        enqueue,
        history,
        canceller,
        clock: systemClock,
        log: log.child({ component: "resume" }),
      });
      const checkpointer = new Checkpointer({
        store,
        history,
        clock: systemClock,
        failRun: (runId, message) => failRun(ends, runId, message),
      });

      onStop(() => pool.stop(config.STEPLINE_EXECUTOR_SHUTDOWN_GRACE_MS));

      const grpc = await startGrpcServer(config.STEPLINE_EXECUTOR_GRPC_ADDR, [
        {
          definition: ExecutorServiceService,
          implementation: executorService(scheduler, resumer, canceller, checkpointer, log),
        },
      ]);
      // Stopped first: no new runs or resumes while the work in flight ends.
      onStop(() => grpc.close());
      readyWhen(() => redis.status === "ready" && history.isConnected());

      // Kafka may come up after us: keep trying; readiness stays false until it is connected.
      await retry(() => history.start(), {
        signal: stopping,
        log,
        what: "connect to Kafka",
        backoff: { firstMs: 200, maxMs: 5_000 },
      });
      if (!stopping.aborted) pool.start();
      return {
        grpcPort: grpc.port,
        dev,
        concurrency: config.STEPLINE_EXECUTOR_CONCURRENCY,
        queues: config.STEPLINE_QUEUE_GRPC_ADDR,
      };
    },
  },
  process.env,
);
