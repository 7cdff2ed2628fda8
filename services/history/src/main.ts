// Wiring only: config, ClickHouse schema, gRPC HistoryService, the `history` topic consumer, the
// admin port, graceful shutdown. ClickHouse or Kafka being down at start delays startup (retried
// with backoff) rather than crash-looping; readiness stays false until both are in use.
import { createClickHouse } from "@stepline/internal/clickhouse";
import { loadConfig } from "@stepline/internal/config";
import type { GrpcServer } from "@stepline/internal/grpc";
import { startGrpcServer } from "@stepline/internal/grpc";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { onShutdown, serviceConfig, startAdminServer } from "@stepline/internal/lifecycle";
import { createLogger } from "@stepline/internal/log";
import { retry } from "@stepline/internal/retry";
import { startTelemetry } from "@stepline/internal/telemetry";
import { HistoryServiceService } from "@stepline/proto/stepline/history/v1/history_service";
import type { Config } from "./config.js";
import { configSchema } from "./config.js";
import { createHistoryConsumer } from "./consumer.js";
import { ensureSchema } from "./schema.js";
import { historyService } from "./server.js";
import { HistoryStore } from "./store.js";

function readConfig(): Config {
  return serviceConfig("history", () => loadConfig(configSchema, process.env));
}

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLogger("history", config.STEPLINE_LOG_LEVEL);
  const stopTelemetry = await startTelemetry("stepline-history", process.env);
  const database = config.STEPLINE_CLICKHOUSE_DATABASE;
  const prefix = config.STEPLINE_KAFKA_TOPIC_PREFIX;

  // No default database on the client: the schema step creates it, every query names it.
  const ch = createClickHouse(config.STEPLINE_CLICKHOUSE_URL);
  const store = new HistoryStore(ch, database);
  const consumer = createHistoryConsumer({
    kafka: createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-history", log),
    store,
    log,
    topic: topicNames(prefix).history,
    groupId: groupName(prefix, "history"),
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

  const starting = new AbortController();
  let grpc: GrpcServer | undefined;
  const admin = await startAdminServer(
    config.STEPLINE_ADMIN_PORT,
    async () => grpc !== undefined && consumer.joined() && (await store.ping()),
    config.STEPLINE_ADMIN_HOST,
  );
  onShutdown(log, async () => {
    starting.abort();
    await grpc?.close();
    await consumer.stop();
    await admin.close();
    await ch.close();
    await stopTelemetry();
  });

  const retryStart = (what: string, attempt: () => Promise<void>) =>
    retry(attempt, {
      signal: starting.signal,
      log,
      what,
      backoff: { firstMs: 100, maxMs: config.STEPLINE_HISTORY_RETRY_MAX_MS },
    });
  if (!(await retryStart("create clickhouse schema", () => ensureSchema(ch, database)))) return;
  grpc = await startGrpcServer(config.STEPLINE_HISTORY_GRPC_ADDR, [
    { definition: HistoryServiceService, implementation: historyService(store, log) },
  ]);
  if (!(await retryStart("start kafka consumer", () => consumer.start()))) return;
  log.info(
    { grpcPort: grpc.port, adminPort: admin.port, database, topic: topicNames(prefix).history },
    "history started",
  );
}

main().catch((err: unknown) => {
  process.stderr.write(
    `history failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
