// The runner's configuration: shared fragments plus its own knobs (STEPLINE_RUNNER_*).
import {
  ConfigError,
  commonSchema,
  envInt,
  grpcAddrSchema,
  kafkaSchema,
  loadConfig,
  redisSchema,
} from "@stepline/internal/config";

export const configSchema = {
  ...commonSchema,
  STEPLINE_ADMIN_PORT: envInt(8302, 0, 65535),
  ...kafkaSchema,
  ...redisSchema,
  ...grpcAddrSchema,
  /** Messages handled per step of a Kafka batch, and runs per ScheduleRuns call. */
  STEPLINE_RUNNER_CHUNK_SIZE: envInt(500, 1, 10_000),
  /** Deadline of one ScheduleRuns call. */
  STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: envInt(10_000, 100, 20_000),
  /** First and longest wait between retries of a failed batch (doubling, with jitter); the
   * consumer heartbeats between waits, so a failed call plus the longest wait must fit in the
   * session timeout (checked by loadRunnerConfig). */
  STEPLINE_RUNNER_RETRY_MIN_MS: envInt(200, 1, 20_000),
  STEPLINE_RUNNER_RETRY_MAX_MS: envInt(10_000, 1, 20_000),
  /** How long the group waits for a silent member (a crashed runner) before giving its partitions
   * to another: shorter fails over sooner, but a stall longer than it costs a rebalance. The broker
   * accepts 6 s to 30 min by default. */
  STEPLINE_RUNNER_SESSION_TIMEOUT_MS: envInt(30_000, 6_000, 300_000),
  /** Kafka partitions processed at the same time by one replica. */
  STEPLINE_RUNNER_PARTITION_CONCURRENCY: envInt(2, 1, 64),
  /** How often the offsets of handled events are committed (and once more at stop). */
  STEPLINE_RUNNER_COMMIT_INTERVAL_MS: envInt(1_000, 10, 60_000),
};

export type RunnerConfig = ReturnType<typeof loadRunnerConfig>;

/**
 * Parses the runner's configuration from `env`; throws ConfigError listing every bad variable, or
 * naming the variables that cannot work together.
 */
export function loadRunnerConfig(env: NodeJS.ProcessEnv) {
  const config = loadConfig(configSchema, env);
  // While a chunk fails, the consumer goes a failed ScheduleRuns call plus one retry wait without a
  // heartbeat; longer than the session, and the group evicts it and rebalances on every retry.
  // (The shared backoff's jitter only shortens a wait: @stepline/internal/retry.)
  const silentMs = config.STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS + config.STEPLINE_RUNNER_RETRY_MAX_MS;
  if (silentMs >= config.STEPLINE_RUNNER_SESSION_TIMEOUT_MS) {
    throw new ConfigError(
      "invalid configuration:\n  STEPLINE_RUNNER_RETRY_MAX_MS: plus " +
        "STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS it must stay under STEPLINE_RUNNER_SESSION_TIMEOUT_MS " +
        `(${Math.ceil(silentMs)} ms >= ${config.STEPLINE_RUNNER_SESSION_TIMEOUT_MS} ms)`,
    );
  }
  return config;
}
