// The five Stepline services: their ports, the environment they read, and how to run one.
import path from "node:path";
import { ROOT, startProcess, waitFor } from "./lib.mjs";

/** Default ports of each service (grpc: its gRPC server; admin: /healthz /readyz /metrics). */
export const SERVICES = [
  { name: "event-api", grpcPort: 50051, adminPort: 8301, httpPort: 8288, controlPort: 50056 },
  { name: "runner", grpcPort: 50052, adminPort: 8302 },
  { name: "queue", grpcPort: 50053, adminPort: 8303 },
  { name: "executor", grpcPort: 50054, adminPort: 8304 },
  { name: "history", grpcPort: 50055, adminPort: 8305 },
];

/** STEPLINE_EVENT_API_GRPC_ADDR for "event-api", and so on. */
function grpcAddrVar(name) {
  return `STEPLINE_${name.toUpperCase().replaceAll("-", "_")}_GRPC_ADDR`;
}

/**
 * The environment of every service process, as { [name]: { VAR: value } }: exactly the variables the
 * services read. infra is what startInfra returns; pass other `services` ports, a topic prefix or a
 * database to run a second, isolated cluster (e.g. in end-to-end tests).
 */
export function serviceEnv(
  infra,
  {
    dev = false,
    services = SERVICES,
    topicPrefix = "",
    clickhouseDatabase = "stepline",
    internalToken = "",
  } = {},
) {
  const shared = {
    STEPLINE_DEV: dev ? "1" : "0",
    STEPLINE_INTERNAL_TOKEN: internalToken,
    STEPLINE_LOG_LEVEL: "info",
    STEPLINE_KAFKA_BROKERS: infra.kafkaBrokers,
    STEPLINE_KAFKA_TOPIC_PREFIX: topicPrefix,
    STEPLINE_REDIS_URL: infra.redisUrl,
    STEPLINE_CLICKHOUSE_URL: infra.clickhouseUrl,
    STEPLINE_CLICKHOUSE_DATABASE: clickhouseDatabase,
  };
  // Every service listens on its own address and dials the others', so each gets all five.
  for (const s of services) shared[grpcAddrVar(s.name)] = `127.0.0.1:${s.grpcPort}`;
  const control = services.find((s) => s.controlPort);
  if (control) shared.STEPLINE_EVENT_API_CONTROL_ADDR = `127.0.0.1:${control.controlPort}`;
  return Object.fromEntries(
    services.map((s) => [
      s.name,
      {
        ...shared,
        STEPLINE_ADMIN_PORT: String(s.adminPort),
        ...(s.httpPort ? { STEPLINE_HTTP_PORT: String(s.httpPort) } : {}),
      },
    ]),
  );
}

function serviceMain(name) {
  return path.join(ROOT, "services", name, "dist", "main.js");
}

const KEPT_LINES = 30;

/**
 * Starts `node services/<name>/dist/main.js`, echoing each output line as "[name] line" and keeping
 * the last lines for the report when it dies. Returns startProcess's handle plus lastLines().
 */
export function launchService(name, env, width = name.length, nodeArgs = []) {
  const recent = [];
  const prefix = `[${name}]`.padEnd(width + 2);
  const proc = startProcess({
    name,
    cmd: process.execPath,
    args: [...nodeArgs, serviceMain(name)],
    env,
    onLine: (line) => {
      console.log(`${prefix} ${line}`);
      recent.push(line);
      if (recent.length > KEPT_LINES) recent.shift();
    },
  });
  return { ...proc, lastLines: () => recent.slice() };
}

/** Resolves once GET /readyz on the admin port answers 200; fails early if the process exits. */
export function waitReady(proc, adminPort, timeoutMs) {
  return waitFor(
    `${proc.name} /readyz`,
    async () => {
      const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      return res.status === 200;
    },
    { timeoutMs, isAborted: proc.hasExited },
  );
}
