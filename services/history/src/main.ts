// Wiring only: the ClickHouse schema, the gRPC HistoryService and the consumer of the `history`
// and `events` topics.
// ClickHouse or Kafka being down at start delays startup (retried with backoff) rather than
// crash-looping; readiness stays false until both are in use.
import { createClickHouse } from "@stepline/internal/clickhouse";
import { loadConfig } from "@stepline/internal/config";
import { startGrpcServer } from "@stepline/internal/grpc";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { runService } from "@stepline/internal/lifecycle";
import { retry } from "@stepline/internal/retry";
import { HistoryServiceService } from "@stepline/proto/stepline/history/v1/history_service";
import { configSchema } from "./config.js";
import { createHistoryConsumer } from "./consumer.js";
import { startRetention } from "./retention.js";
import { ensureSchema } from "./schema.js";
import { historyService } from "./server.js";
import { HistoryStore } from "./store.js";

runService(
  {
    name: "history",
    config: (env) => loadConfig(configSchema, env),
    async start({ config, log, stopping, onStop, readyWhen }) {
      const database = config.STEPLINE_CLICKHOUSE_DATABASE;
      const topics = topicNames(config.STEPLINE_KAFKA_TOPIC_PREFIX);
      const topic = topics.history;
      // No default database on the client: the schema step creates it, every query names it.
      const ch = createClickHouse(config.STEPLINE_CLICKHOUSE_URL);
      onStop(() => ch.close());
      const store = new HistoryStore(ch, database);
      const consumer = createHistoryConsumer({
        kafka: createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-history", log),
        store,
        log,
        topic,
        eventsTopic: topics.events,
        groupId: groupName(config.STEPLINE_KAFKA_TOPIC_PREFIX, "history"),
        batchWaitMs: config.STEPLINE_HISTORY_BATCH_WAIT_MS,
        batchMinBytes: config.STEPLINE_HISTORY_BATCH_MIN_BYTES,
        batchMaxBytes: config.STEPLINE_HISTORY_BATCH_MAX_BYTES,
        flushMs: config.STEPLINE_HISTORY_FLUSH_MS,
        // Every partition of the topic at once, so their batches share a flush.
        partitionsConsumedConcurrently: 16,
        retryMaxMs: config.STEPLINE_HISTORY_RETRY_MAX_MS,
        onFatal: (err) => {
          log.fatal({ err }, "kafka consumer stopped for good; exiting so the process is restarted");
          process.exit(1);
        },
      });
      onStop(() => consumer.stop());

      const retryStart = (what: string, attempt: () => Promise<void>) =>
        retry(attempt, {
          signal: stopping,
          log,
          what,
          backoff: { firstMs: 100, maxMs: config.STEPLINE_HISTORY_RETRY_MAX_MS },
        });
      if (!(await retryStart("create clickhouse schema", () => ensureSchema(ch, database)))) return {};
      const retention = startRetention({ ch, database, days: config.STEPLINE_HISTORY_RETENTION_DAYS, log });
      onStop(() => retention.stop());
      const grpc = await startGrpcServer(config.STEPLINE_HISTORY_GRPC_ADDR, [
        { definition: HistoryServiceService, implementation: historyService(store, log) },
      ]);
      onStop(() => grpc.close());
      if (!(await retryStart("start kafka consumer", () => consumer.start()))) return {};
      readyWhen(async () => consumer.joined() && (await store.ping()));
      return { grpcPort: grpc.port, database, topic };
    },
  },
  process.env,
);
