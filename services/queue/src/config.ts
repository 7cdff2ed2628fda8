// The queue service's configuration: shared fragments plus the queue's own knobs.
import { commonSchema, envInt, grpcAddrSchema, redisSchema } from "@stepline/internal/config";
import { z } from "zod";

export const configSchema = {
  ...commonSchema,
  ...redisSchema,
  STEPLINE_ADMIN_PORT: envInt(8303, 0, 65535),
  STEPLINE_QUEUE_GRPC_ADDR: grpcAddrSchema.STEPLINE_QUEUE_GRPC_ADDR,
  /** The runner, which answers the functions' concurrency and throttle limits. */
  STEPLINE_RUNNER_GRPC_ADDR: grpcAddrSchema.STEPLINE_RUNNER_GRPC_ADDR,
  /** How long the functions' limits are cached: a re-sync that changes one applies within this. */
  STEPLINE_QUEUE_LIMITS_TTL_MS: envInt(2_000, 0, 600_000),
  /** How long a lease lasts unless extended. */
  STEPLINE_QUEUE_LEASE_MS: envInt(30_000, 1_000, 3_600_000),
  /** Deliveries (claims) of one item before it is dead-lettered. */
  STEPLINE_QUEUE_MAX_DELIVERIES: envInt(20, 1, 10_000),
  /** How long a completed item's id is remembered, refusing re-enqueues (must exceed Kafka replay windows). */
  STEPLINE_QUEUE_SEEN_TTL_MS: envInt(3_600_000, 1_000),
  /** Items per claim call. */
  STEPLINE_QUEUE_CLAIM_BATCH: envInt(64, 1, 1_000),
  /** Shard owner lease, renewed every third of it. */
  STEPLINE_QUEUE_OWNER_LEASE_MS: envInt(10_000, 1_000, 600_000),
  /** Safety sweep period over the owned shards. */
  STEPLINE_QUEUE_SWEEP_MS: envInt(5_000, 100, 600_000),
  /** Key namespace inside the hash tag (e.g. "prod:"); empty by default. */
  STEPLINE_QUEUE_KEY_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]*$/)
    .default(""),
};

export type QueueConfig = z.infer<z.ZodObject<typeof configSchema>>;
