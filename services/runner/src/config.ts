// The runner's configuration: shared fragments plus its own knobs (STEPLINE_RUNNER_*).
import {
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
   * consumer heartbeats between waits, so the longest stays well under the 30 s session timeout. */
  STEPLINE_RUNNER_RETRY_MIN_MS: envInt(200, 1, 20_000),
  STEPLINE_RUNNER_RETRY_MAX_MS: envInt(10_000, 1, 20_000),
  /** Kafka partitions processed at the same time by one replica. */
  STEPLINE_RUNNER_PARTITION_CONCURRENCY: envInt(2, 1, 64),
};

export type RunnerConfig = ReturnType<typeof loadRunnerConfig>;

/** Parses the runner's configuration from `env`; throws ConfigError listing every bad variable. */
export function loadRunnerConfig(env: NodeJS.ProcessEnv) {
  return loadConfig(configSchema, env);
}
