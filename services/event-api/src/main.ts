// event-api: wiring only. Redis (tenancy), the Kafka producer (events), gRPC clients of runner
// (sync) and history (REST reads), the EventService gRPC server, the TenantService one on the
// control address, the public HTTP API and the admin port.

import { systemClock } from "@stepline/internal/clock";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { createKafka, topicNames } from "@stepline/internal/kafka";
import { onShutdown, serviceConfig, startAdminServer } from "@stepline/internal/lifecycle";
import { createLogger } from "@stepline/internal/log";
import { createRedis } from "@stepline/internal/redis";
import { startTelemetry } from "@stepline/internal/telemetry";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { HistoryServiceClient } from "@stepline/proto/stepline/history/v1/history_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { loadEventApiConfig } from "./config.js";
import { eventService } from "./event-server.js";
import { buildHttpApp } from "./http.js";
import { EventProducer } from "./producer.js";
import { historyOverGrpc, registryOverGrpc, runControlOverGrpc } from "./rest.js";
import { TenancyStore } from "./tenancy.js";
import { tenantService } from "./tenant-server.js";

async function main(): Promise<void> {
  const config = serviceConfig("event-api", () => loadEventApiConfig(process.env));
  const log = createLogger("event-api", config.STEPLINE_LOG_LEVEL);
  const stopTelemetry = await startTelemetry("stepline-event-api", process.env);

  const redis = createRedis(config.STEPLINE_REDIS_URL, log);
  const tenancy = new TenancyStore(redis);
  const devTenant = config.STEPLINE_DEV ? await tenancy.ensureDevTenant() : null;
  if (devTenant) log.info({ accountId: devTenant.accountId, environmentId: devTenant.id }, "dev mode");

  const kafka = createKafka(config.STEPLINE_KAFKA_BROKERS, "stepline-event-api", log);
  const producer = new EventProducer(kafka, {
    topic: topicNames(config.STEPLINE_KAFKA_TOPIC_PREFIX).events,
    timeoutMs: config.STEPLINE_EVENT_API_PRODUCE_TIMEOUT_MS,
    log: log.child({ component: "producer" }),
  });
  producer.start();

  const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);
  const history = createClient(HistoryServiceClient, config.STEPLINE_HISTORY_GRPC_ADDR);
  const executor = createClient(ExecutorServiceClient, config.STEPLINE_EXECUTOR_GRPC_ADDR);
  const rpcTimeout = config.STEPLINE_EVENT_API_RPC_TIMEOUT_MS;

  // TenantService can list every key: it gets a listener of its own (the control address), which a
  // deployment exposes to operators and the executor only, apart from the data plane.
  const grpc = await startGrpcServer(config.STEPLINE_EVENT_API_GRPC_ADDR, [
    eventService(producer, systemClock, newId, log),
  ]);
  const control = await startGrpcServer(config.STEPLINE_EVENT_API_CONTROL_ADDR, [
    tenantService(tenancy, log),
  ]);
  const http = buildHttpApp({
    log,
    tenants: tenancy,
    devTenant: devTenant ? { accountId: devTenant.accountId, environmentId: devTenant.id } : null,
    loopbackOnly: /^(127\.|localhost$|::1$)/.test(config.STEPLINE_EVENT_API_HTTP_HOST),
    sink: producer,
    registry: registryOverGrpc(runner, rpcTimeout),
    history: historyOverGrpc(history, rpcTimeout),
    runs: runControlOverGrpc(executor, rpcTimeout),
  });
  await http.listen({ port: config.STEPLINE_HTTP_PORT, host: config.STEPLINE_EVENT_API_HTTP_HOST });
  const admin = await startAdminServer(
    config.STEPLINE_ADMIN_PORT,
    async () => producer.connected() && (await redis.ping()) === "PONG",
    config.STEPLINE_ADMIN_HOST,
  );
  log.info(
    {
      httpPort: config.STEPLINE_HTTP_PORT,
      grpcPort: grpc.port,
      controlPort: control.port,
      adminPort: admin.port,
    },
    "event-api listening",
  );

  onShutdown(log, async () => {
    // Stop taking requests first; in-flight ones finish (their Kafka sends included).
    await http.close();
    await Promise.all([grpc.close(), control.close()]);
    await producer.stop();
    runner.close();
    history.close();
    executor.close();
    await admin.close();
    redis.disconnect();
    await stopTelemetry();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`event-api failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
