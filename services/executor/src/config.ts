// The executor's configuration: shared fragments plus its own STEPLINE_EXECUTOR_* knobs.
import {
  ConfigError,
  commonSchema,
  envInt,
  grpcAddrSchema,
  kafkaSchema,
  loadConfig,
  redisSchema,
} from "@stepline/internal/config";
import { egressPolicy } from "@stepline/internal/egress";
import { z } from "zod";

const DAY_MS = 24 * 60 * 60 * 1000;
const ADDR = /^[^\s:,]+:\d{1,5}$/;

/**
 * STEPLINE_QUEUE_GRPC_ADDR as the executor reads it: one queue replica or a comma-separated list
 * of them (each replica hands out only the shards it owns, so the executor needs a Work stream to
 * every one). The shared schema in @stepline/internal takes a single address, which is all the
 * other services need; this overrides it for the executor only.
 */
const queueAddrsSchema = z
  .string()
  .default("127.0.0.1:50053")
  .transform((value, ctx) => {
    const addrs = value.split(",").map((a) => a.trim());
    const bad = addrs.filter((a) => !ADDR.test(a));
    if (bad.length > 0 || addrs.length === 0) {
      ctx.addIssue({ code: "custom", message: "must be host:port, or a comma-separated list of them" });
      return z.NEVER;
    }
    if (new Set(addrs).size !== addrs.length) {
      ctx.addIssue({ code: "custom", message: "lists an address twice" });
      return z.NEVER;
    }
    return addrs;
  });

export const configSchema = {
  ...commonSchema,
  STEPLINE_ADMIN_PORT: envInt(8304, 0, 65535),
  ...kafkaSchema,
  ...redisSchema,
  ...grpcAddrSchema,
  STEPLINE_QUEUE_GRPC_ADDR: queueAddrsSchema,
  /** Most items (app calls) in flight at once. */
  STEPLINE_EXECUTOR_CONCURRENCY: envInt(64, 1, 10_000),
  /** Whole-call deadline for one HTTP call to an app. */
  STEPLINE_EXECUTOR_REQUEST_TIMEOUT_MS: envInt(300_000, 100, 3_600_000),
  /**
   * Answers larger than this fail the run. The default holds a step result at the default output
   * limit (4 MiB) with the op around it, so that limit, not this one, is what a big step meets.
   */
  STEPLINE_EXECUTOR_MAX_RESPONSE_BYTES: envInt(4 * 1024 * 1024 + 64 * 1024, 1024, 256 * 1024 * 1024),
  /** Retry backoff: this delay before the second attempt, doubling each time, with jitter. */
  STEPLINE_EXECUTOR_BACKOFF_BASE_MS: envInt(1_000, 1, 3_600_000),
  /** Cap of the retry backoff. */
  STEPLINE_EXECUTOR_BACKOFF_MAX_MS: envInt(300_000, 1, DAY_MS),
  /**
   * Cap of the release backoff: an item handed back because the engine's own dependencies failed
   * (Redis, Kafka, the signing-key lookup) waits the retry backoff's base, doubling with each
   * release in a row, up to this. Releases never spend attempts or count toward dead-lettering.
   */
  STEPLINE_EXECUTOR_RELEASE_BACKOFF_MAX_MS: envInt(60_000, 1, DAY_MS),
  /** Attempts per call when the run spec carries none (4 retries, like Inngest). */
  STEPLINE_EXECUTOR_DEFAULT_MAX_ATTEMPTS: envInt(5, 1, 1_000),
  /** Steps a run may save (results, resolved sleeps, waits, invokes); past it the run fails. */
  STEPLINE_EXECUTOR_MAX_STEPS_PER_RUN: envInt(1_000, 1, 1_000_000),
  /** Bytes of saved step results a run may hold; past it the run fails. */
  STEPLINE_EXECUTOR_MAX_STATE_BYTES: envInt(32 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  /** Bytes of one step's saved result; a larger one fails the run. */
  STEPLINE_EXECUTOR_MAX_STEP_OUTPUT_BYTES: envInt(4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
  /** Calls a run may take: bounds a function that loops (plans and re-plans without finishing). */
  STEPLINE_EXECUTOR_MAX_CALLS_PER_RUN: envInt(10_000, 10, 10_000_000),
  /** How long a run's state is kept after the run ended. */
  STEPLINE_EXECUTOR_STATE_TTL_MS: envInt(7 * DAY_MS, 1_000, 365 * DAY_MS),
  /** How long an environment's signing key is cached. */
  STEPLINE_EXECUTOR_KEY_CACHE_MS: envInt(60_000, 0, DAY_MS),
  /** How long a history record may wait for Kafka before it is left to the background retry. */
  STEPLINE_EXECUTOR_HISTORY_TIMEOUT_MS: envInt(5_000, 100, 600_000),
  /** How long a completion or retry may wait for the queue before the item is given up. */
  STEPLINE_EXECUTOR_OP_TIMEOUT_MS: envInt(30_000, 100, 600_000),
  /**
   * 1: send `ctx.fn_id` and `ctx.qi_id`, so SDK v4 checkpoints (runs steps inside one call and
   * POSTs them to /v1/checkpoint/<run>/async); 0: one step per call for every SDK.
   */
  STEPLINE_EXECUTOR_CHECKPOINTING: envInt(1, 0, 1),
  /**
   * 1: a run's next call due now is handed straight back to this executor by the completion
   * (Completion.hand_off); 0: every call goes through the queue's fair scheduling round.
   */
  STEPLINE_EXECUTOR_HAND_OFF: envInt(1, 0, 1),
  /**
   * Calls one lease may make in a row for a run in plain sequential progress before its completion
   * goes through the queue (which applies a pause or a lowered limit then); 1: one call per lease.
   */
  STEPLINE_EXECUTOR_CALLS_PER_LEASE: envInt(8, 1, 1_000),
  /**
   * Hosts, addresses and CIDR ranges (comma-separated) the executor may call even though the
   * egress policy refuses them (production mode: loopback, private, link-local and metadata
   * addresses; dev mode: link-local and metadata ones). E.g. `localhost,10.1.0.0/16`.
   */
  STEPLINE_EXECUTOR_EGRESS_ALLOW: z
    .string()
    .default("")
    .superRefine((value, ctx) => {
      try {
        egressPolicy({ dev: false, allow: value });
      } catch (err) {
        ctx.addIssue({
          code: "custom",
          message: `not a list of hosts, addresses or CIDR ranges: ${(err as Error).message}`,
        });
      }
    }),
  /** On SIGTERM, how long calls in flight may finish before they are released to the queue. */
  STEPLINE_EXECUTOR_SHUTDOWN_GRACE_MS: envInt(10_000, 0, 600_000),
};

export type ExecutorConfig = ReturnType<typeof loadExecutorConfig>;

/** Parses the executor's configuration from `env` (throws ConfigError listing every problem). */
export function loadExecutorConfig(env: NodeJS.ProcessEnv) {
  const config = loadConfig(configSchema, env);
  // Every stream keeps at least one credit (see work-pool.ts), so each needs a slot of its own.
  if (config.STEPLINE_EXECUTOR_CONCURRENCY < config.STEPLINE_QUEUE_GRPC_ADDR.length) {
    throw new ConfigError(
      "invalid configuration:\n  STEPLINE_EXECUTOR_CONCURRENCY: must be at least the number of queue replicas in STEPLINE_QUEUE_GRPC_ADDR",
    );
  }
  return config;
}
