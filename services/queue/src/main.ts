// Wiring only: config, Redis, the queue replica, the admin server, graceful shutdown.
import { loadConfig } from "@stepline/internal/config";
import { createClient } from "@stepline/internal/grpc";
import { onShutdown, serviceConfig, startAdminServer } from "@stepline/internal/lifecycle";
import { createLogger } from "@stepline/internal/log";
import { createRedis } from "@stepline/internal/redis";
import { startTelemetry } from "@stepline/internal/telemetry";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { configSchema } from "./config.js";
import { grpcLimitsSource } from "./limits.js";
import { startQueueService } from "./service.js";

const config = serviceConfig("queue", () => loadConfig(configSchema, process.env));
const log = createLogger("queue", config.STEPLINE_LOG_LEVEL);
const stopTelemetry = await startTelemetry("stepline-queue", process.env);
const redis = createRedis(config.STEPLINE_REDIS_URL, log);
const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);

/** A GetFlowLimits call that takes longer leaves constrained partitions for the next round. */
const LIMITS_DEADLINE_MS = 2_000;

const service = await startQueueService(
  redis,
  {
    grpcAddr: config.STEPLINE_QUEUE_GRPC_ADDR,
    namespace: config.STEPLINE_QUEUE_KEY_NAMESPACE,
    leaseMs: config.STEPLINE_QUEUE_LEASE_MS,
    maxDeliveries: config.STEPLINE_QUEUE_MAX_DELIVERIES,
    seenTtlMs: config.STEPLINE_QUEUE_SEEN_TTL_MS,
    claimBatch: config.STEPLINE_QUEUE_CLAIM_BATCH,
    ownerLeaseMs: config.STEPLINE_QUEUE_OWNER_LEASE_MS,
    sweepMs: config.STEPLINE_QUEUE_SWEEP_MS,
    limits: grpcLimitsSource(runner, LIMITS_DEADLINE_MS),
    limitsTtlMs: config.STEPLINE_QUEUE_LIMITS_TTL_MS,
  },
  log,
);
const admin = await startAdminServer(config.STEPLINE_ADMIN_PORT, service.ready, config.STEPLINE_ADMIN_HOST);

onShutdown(log, async () => {
  await service.stop();
  await admin.close();
  await redis.quit();
  runner.close();
  await stopTelemetry();
});
