// Wiring only: Redis, the runner client (flow limits) and the queue replica's gRPC service.
import { loadConfig } from "@stepline/internal/config";
import { createClient } from "@stepline/internal/grpc";
import { runService } from "@stepline/internal/lifecycle";
import { createRedis } from "@stepline/internal/redis";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { configSchema } from "./config.js";
import { grpcLimitsSource } from "./limits.js";
import { startQueueService } from "./service.js";

/** A GetFlowLimits call that takes longer leaves constrained partitions for the next round. */
const LIMITS_DEADLINE_MS = 2_000;

runService(
  {
    name: "queue",
    config: (env) => loadConfig(configSchema, env),
    async start({ config, log, onStop, readyWhen }) {
      const redis = createRedis(config.STEPLINE_REDIS_URL, log);
      onStop(() => redis.quit());
      const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);
      onStop(() => runner.close());
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
      onStop(() => service.stop());
      readyWhen(service.ready);
      return { grpcAddr: config.STEPLINE_QUEUE_GRPC_ADDR };
    },
  },
  process.env,
);
