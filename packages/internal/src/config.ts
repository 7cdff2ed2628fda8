// Typed configuration from environment variables. Each service builds one zod schema from these
// fragments and calls `loadConfig` once in main.ts; a bad variable stops the process with a list
// of every problem (never a half-configured service).
import { z } from "zod";

/** A boolean variable: `1`/`true`/`yes` or `0`/`false`/`no`. */
export const envBool = (fallback: boolean) =>
  z
    .enum(["1", "0", "true", "false", "yes", "no", ""])
    .default(fallback ? "1" : "0")
    .transform((v) => v === "1" || v === "true" || v === "yes");

/** An integer variable in [min, max]. */
export const envInt = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** A `host:port` address. */
export const envAddr = (fallback: string) =>
  z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, "must be host:port")
    .default(fallback);

/** Variables every service reads. */
export const commonSchema = {
  STEPLINE_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  STEPLINE_DEV: envBool(false),
  STEPLINE_ADMIN_PORT: envInt(0, 0, 65535),
  /** Interface the admin port binds to (0.0.0.0 in containers, so probes can reach it). */
  STEPLINE_ADMIN_HOST: z.string().min(1).default("127.0.0.1"),
  /**
   * The secret every service and the CLI send on internal gRPC calls (grpc.ts); each server
   * refuses a call without it. Required in production mode (16 characters or more); empty in dev
   * mode leaves internal calls unauthenticated.
   */
  STEPLINE_INTERNAL_TOKEN: z.string().default(""),
};

/** Checks the internal token production mode requires (see STEPLINE_INTERNAL_TOKEN). */
export function checkInternalToken(config: {
  STEPLINE_DEV: boolean;
  STEPLINE_INTERNAL_TOKEN: string;
}): string {
  const token = config.STEPLINE_INTERNAL_TOKEN;
  if (!config.STEPLINE_DEV && token.length < 16) {
    throw new ConfigError(
      "invalid configuration:\n  STEPLINE_INTERNAL_TOKEN: production mode needs a secret of at least 16 characters, the same for every service and the CLI (npm start makes one in .stepline/internal-token)",
    );
  }
  return token;
}

export const kafkaSchema = {
  STEPLINE_KAFKA_BROKERS: z.string().min(1).default("127.0.0.1:9092"),
  /** Prefix for topic and consumer-group names, so tests and several clusters can share a broker. */
  STEPLINE_KAFKA_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/)
    .default(""),
};

export const redisSchema = {
  STEPLINE_REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
};

export const clickhouseSchema = {
  STEPLINE_CLICKHOUSE_URL: z.string().url().default("http://127.0.0.1:8123"),
  STEPLINE_CLICKHOUSE_DATABASE: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .default("stepline"),
};

/** gRPC addresses of every service: each listens on its own and dials the others. */
export const grpcAddrSchema = {
  STEPLINE_EVENT_API_GRPC_ADDR: envAddr("127.0.0.1:50051"),
  /** event-api's control listener: TenantService (accounts, environments, every key), for the CLI and the executor. */
  STEPLINE_EVENT_API_CONTROL_ADDR: envAddr("127.0.0.1:50056"),
  STEPLINE_RUNNER_GRPC_ADDR: envAddr("127.0.0.1:50052"),
  STEPLINE_QUEUE_GRPC_ADDR: envAddr("127.0.0.1:50053"),
  STEPLINE_EXECUTOR_GRPC_ADDR: envAddr("127.0.0.1:50054"),
  STEPLINE_HISTORY_GRPC_ADDR: envAddr("127.0.0.1:50055"),
};

/** Thrown by loadConfig; main.ts prints it and exits 1. */
export class ConfigError extends Error {}

/**
 * Parses `env` with `shape`. Every invalid variable is reported at once, by name, with the
 * reason; values are never echoed because some of them are secrets.
 */
export function loadConfig<S extends z.ZodRawShape>(
  shape: S,
  env: NodeJS.ProcessEnv,
): z.infer<z.ZodObject<S>> {
  const result = z.object(shape).safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}
