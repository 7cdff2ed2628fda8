// The runner process: wiring only. The consumer connects in the background (retrying while Kafka
// is down), so SyncApp works before it joins; readiness waits for both Redis and the group join.

import { systemClock } from "@stepline/internal/clock";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { onShutdown, serviceConfig, startAdminServer } from "@stepline/internal/lifecycle";
import { createLogger } from "@stepline/internal/log";
import { createRedis } from "@stepline/internal/redis";
import { startTelemetry } from "@stepline/internal/telemetry";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Buffers } from "./buffers.js";
import type { RunnerConfig } from "./config.js";
import { loadRunnerConfig } from "./config.js";
import { EventConsumer, grpcScheduler } from "./consumer.js";
import { Crons } from "./crons.js";
import { grpcPauses } from "./pauses.js";
import { Registry } from "./registry.js";
import { runnerService } from "./server.js";
import { KafkaSkipSink } from "./skips.js";

const config: RunnerConfig = serviceConfig("runner", () => loadRunnerConfig(process.env));

const log = createLogger("runner", config.STEPLINE_LOG_LEVEL);
const stopTelemetry = await startTelemetry("stepline-runner", process.env);
const prefix = config.STEPLINE_KAFKA_TOPIC_PREFIX;

const redis = createRedis(config.STEPLINE_REDIS_URL, log);
const registry = new Registry(redis);
const executor = createClient(ExecutorServiceClient, config.STEPLINE_EXECUTOR_GRPC_ADDR);
// Cron ticks are queue items: a sync enqueues a cron's next tick (any queue replica takes it).
const queue = createClient(QueueServiceClient, config.STEPLINE_QUEUE_GRPC_ADDR);
const schedule = grpcScheduler(executor, config.STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS);
const enqueue = async (items: NewItem[]) => {
  await callUnary(queue.enqueue.bind(queue), { items }, config.STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS);
};
const buffers = new Buffers({
  redis,
  registry,
  enqueue,
  schedule,
  clock: systemClock,
  log: log.child({ component: "buffers" }),
});
const crons = new Crons({
  registry,
  redis,
  enqueue,
  schedule,
  clock: systemClock,
  log: log.child({ component: "cron" }),
});
const kafka = createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-runner", log);
const skips = new KafkaSkipSink(kafka, topicNames(prefix).history);
const consumer = new EventConsumer({
  kafka,
  topic: topicNames(prefix).events,
  groupId: groupName(prefix, "runner"),
  redis,
  registry,
  schedule,
  skips: skips.send,
  buffers,
  pauses: grpcPauses(executor, config.STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS),
  log,
  chunkSize: config.STEPLINE_RUNNER_CHUNK_SIZE,
  retryMinMs: config.STEPLINE_RUNNER_RETRY_MIN_MS,
  retryMaxMs: config.STEPLINE_RUNNER_RETRY_MAX_MS,
  partitionConcurrency: config.STEPLINE_RUNNER_PARTITION_CONCURRENCY,
  sessionTimeoutMs: config.STEPLINE_RUNNER_SESSION_TIMEOUT_MS,
});

const admin = await startAdminServer(
  config.STEPLINE_ADMIN_PORT,
  async () => consumer.isJoined() && (await redis.ping()) === "PONG",
  config.STEPLINE_ADMIN_HOST,
);
let grpc: GrpcServer | undefined;
onShutdown(log, async () => {
  // Stop consuming first: disconnecting commits the offsets of batches whose runs exist.
  await consumer.stop();
  await skips.stop();
  await grpc?.close();
  await admin.close();
  executor.close();
  queue.close();
  await redis.quit();
  await stopTelemetry();
});

grpc = await startGrpcServer(config.STEPLINE_RUNNER_GRPC_ADDR, [
  runnerService(log, registry, crons, buffers),
]);
consumer.start();
log.info({ grpcPort: grpc.port, adminPort: admin.port, topic: topicNames(prefix).events }, "runner started");
