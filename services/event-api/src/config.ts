// event-api's configuration: the shared fragments plus the HTTP listener and produce deadline.
// Also the CLI's tiny configuration, so that `process.env` is read only here and in main.ts.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  commonSchema,
  envAddr,
  envInt,
  grpcAddrSchema,
  kafkaSchema,
  loadConfig,
  redisSchema,
} from "@stepline/internal/config";
import { z } from "zod";

export const configSchema = {
  ...commonSchema,
  ...kafkaSchema,
  ...redisSchema,
  ...grpcAddrSchema,
  STEPLINE_ADMIN_PORT: envInt(8301, 0, 65535),
  /** The public HTTP API (events, sync, REST, dashboard). */
  STEPLINE_HTTP_PORT: envInt(8288, 0, 65535),
  /**
   * Interface the public HTTP API binds to. Unset: 127.0.0.1 in dev mode outside a container (a
   * developer's machine, where dev mode accepts any event key), else 0.0.0.0 (so SDK apps in
   * other containers or hosts can reach it).
   */
  STEPLINE_EVENT_API_HTTP_HOST: z.string().min(1).optional(),
  /** How long POST /e waits for Kafka to acknowledge before answering 503. */
  STEPLINE_EVENT_API_PRODUCE_TIMEOUT_MS: envInt(10_000, 100, 120_000),
  /** Deadline of calls to runner (sync) and history (REST reads). */
  STEPLINE_EVENT_API_RPC_TIMEOUT_MS: envInt(10_000, 100, 120_000),
  /** The built dashboard; empty: packages/dashboard/dist of this checkout. */
  STEPLINE_EVENT_API_DASHBOARD_DIR: z.string().default(""),
  /** How long history keeps runs and events (history drops them); the dashboard shows it. */
  STEPLINE_HISTORY_RETENTION_DAYS: envInt(30, 1, 3650),
  /**
   * Hosts, addresses and CIDR ranges sync by URL may call in production mode beyond public
   * addresses (comma-separated), as STEPLINE_EXECUTOR_EGRESS_ALLOW is for the executor.
   */
  STEPLINE_EVENT_API_EGRESS_ALLOW: z.string().default(""),
  /**
   * The proxies in front of the HTTP API whose X-Forwarded-For gives the client's address: empty
   * (none; the socket's address), a hop count, or comma-separated addresses and CIDR ranges.
   */
  STEPLINE_EVENT_API_TRUST_PROXY: z.string().default(""),
};

/** packages/dashboard/dist, from this file's place in the checkout (or the image). */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(
  new URL("../../../packages/dashboard/dist", import.meta.url),
);

export type Config = ReturnType<typeof loadEventApiConfig>;

/** STEPLINE_EVENT_API_TRUST_PROXY as buildHttpApp takes it: none, a hop count, or addresses. */
export function trustProxyOf(value: string): boolean | number | string[] {
  const t = value.trim();
  if (t === "") return false;
  if (/^\d+$/.test(t)) return Number(t);
  return t
    .split(",")
    .map((a) => a.trim())
    .filter(Boolean);
}

/**
 * Parses event-api's configuration from `env` (throws ConfigError listing every bad variable).
 * `inContainer` picks the HTTP host's default (see STEPLINE_EVENT_API_HTTP_HOST).
 */
export function loadEventApiConfig(env: NodeJS.ProcessEnv, inContainer = runsInContainer()) {
  const config = loadConfig(configSchema, env);
  const host =
    config.STEPLINE_EVENT_API_HTTP_HOST ?? (config.STEPLINE_DEV && !inContainer ? "127.0.0.1" : "0.0.0.0");
  return { ...config, STEPLINE_EVENT_API_HTTP_HOST: host };
}

/** Docker and Podman leave these files in every container. */
function runsInContainer(): boolean {
  return existsSync("/.dockerenv") || existsSync("/run/.containerenv");
}

const cliSchema = {
  STEPLINE_EVENT_API_CONTROL_ADDR: envAddr("127.0.0.1:50056"),
  STEPLINE_EXECUTOR_GRPC_ADDR: envAddr("127.0.0.1:50054"),
  STEPLINE_QUEUE_GRPC_ADDR: envAddr("127.0.0.1:50053"),
  STEPLINE_INTERNAL_TOKEN: z.string().default(""),
};

/** Where `npm start` keeps the internal token it made (scripts/start.mjs). */
const TOKEN_FILE = new URL("../../../.stepline/internal-token", import.meta.url);

/**
 * The CLI's configuration, from `env`: event-api's control address (TenantService), the
 * ExecutorService and QueueService addresses, and the internal token (STEPLINE_INTERNAL_TOKEN, or
 * the one `npm start` made in .stepline/internal-token; "" when neither is there).
 */
export function loadCliConfig(
  env: NodeJS.ProcessEnv = process.env,
  readTokenFile: () => string = () => (existsSync(TOKEN_FILE) ? readFileSync(TOKEN_FILE, "utf8").trim() : ""),
): {
  addr: string;
  executorAddr: string;
  queueAddr: string;
  token: string;
} {
  const c = loadConfig(cliSchema, env);
  return {
    addr: c.STEPLINE_EVENT_API_CONTROL_ADDR,
    executorAddr: c.STEPLINE_EXECUTOR_GRPC_ADDR,
    queueAddr: c.STEPLINE_QUEUE_GRPC_ADDR,
    token: c.STEPLINE_INTERNAL_TOKEN || readTokenFile(),
  };
}
