// The runner process: wiring only. The consumer connects in the background (retrying while Kafka
// is down), so SyncApp works before it joins; readiness waits for both Redis and the group join.

import { systemClock } from "@stepline/internal/clock";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import { runService } from "@stepline/internal/lifecycle";
import { createRedis } from "@stepline/internal/redis";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Buffers } from "./buffers.js";
import { loadRunnerConfig } from "./config.js";
import { EventConsumer } from "./consumer.js";
import { Crons } from "./crons.js";
import { grpcPauses } from "./pauses.js";
import { grpcEnqueue } from "./queue-client.js";
import { Registry } from "./registry.js";
import { Replays } from "./replays.js";
import { grpcScheduler } from "./schedule-client.js";
import { runnerService } from "./server.js";
import { KafkaSkipSink } from "./skips.js";

runService(
  {
    name: "runner",
    config: (env) => loadRunnerConfig(env),
    async start({ config, log, onStop, readyWhen }) {
      const prefix = config.STEPLINE_KAFKA_TOPIC_PREFIX;
      const deadlineMs = config.STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS;
      const redis = createRedis(config.STEPLINE_REDIS_URL, log);
      onStop(() => redis.quit());
      const registry = new Registry(redis);
      const executor = createClient(ExecutorServiceClient, config.STEPLINE_EXECUTOR_GRPC_ADDR);
      onStop(() => executor.close());
      // Cron ticks are queue items: a sync enqueues a cron's next tick (any queue replica takes it).
      const queue = createClient(QueueServiceClient, config.STEPLINE_QUEUE_GRPC_ADDR);
      onStop(() => queue.close());
      const scheduler = grpcScheduler(executor, deadlineMs, log);
      onStop(() => scheduler.close());
      const schedule = scheduler.schedule;
      const pauses = grpcPauses(executor, deadlineMs, log);
      onStop(() => pauses.close());
      const enqueue = grpcEnqueue(queue, deadlineMs);
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
      const grpc = await startGrpcServer(config.STEPLINE_RUNNER_GRPC_ADDR, [
        runnerService(log, registry, crons, buffers, new Replays({ redis, registry, schedule })),
      ]);
      onStop(() => grpc.close());
      const kafka = createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-runner", log);
      const skips = new KafkaSkipSink(
        createProducer({ brokers: config.STEPLINE_KAFKA_BROKERS, clientId: "stepline-runner" }),
        topicNames(prefix).history,
      );
      onStop(() => skips.stop());
      const consumer = new EventConsumer({
        kafka,
        topic: topicNames(prefix).events,
        groupId: groupName(prefix, "runner"),
        redis,
        registry,
        schedule,
        skips: skips.send,
        buffers,
        pauses,
        log,
        chunkSize: config.STEPLINE_RUNNER_CHUNK_SIZE,
        retryMinMs: config.STEPLINE_RUNNER_RETRY_MIN_MS,
        retryMaxMs: config.STEPLINE_RUNNER_RETRY_MAX_MS,
        partitionConcurrency: config.STEPLINE_RUNNER_PARTITION_CONCURRENCY,
        sessionTimeoutMs: config.STEPLINE_RUNNER_SESSION_TIMEOUT_MS,
        commitIntervalMs: config.STEPLINE_RUNNER_COMMIT_INTERVAL_MS,
      });
      // Stopped first: disconnecting commits the offsets of batches whose runs exist.
      onStop(() => consumer.stop());
      consumer.start();
      readyWhen(async () => consumer.isJoined() && (await redis.ping()) === "PONG");
      return { grpcPort: grpc.port, topic: topicNames(prefix).events };
    },
  },
  process.env,
);
