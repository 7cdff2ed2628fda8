// Process lifecycle shared by every service: `runService` (config, logger, traces, the admin
// HTTP port with /healthz, /readyz and /metrics, and one graceful stop on SIGTERM/SIGINT), so each
// service's main.ts only builds its parts.

import type { Server } from "node:http";
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { ConfigError, checkInternalToken } from "./config.js";
import { useInternalToken } from "./grpc.js";
import type { Logger } from "./log.js";
import { createLogger } from "./log.js";
import { startTelemetry } from "./telemetry.js";

/** What every service's configuration has (commonSchema in config.ts). */
interface CommonConfig {
  STEPLINE_LOG_LEVEL: string;
  STEPLINE_DEV: boolean;
  STEPLINE_ADMIN_PORT: number;
  STEPLINE_ADMIN_HOST: string;
  STEPLINE_INTERNAL_TOKEN: string;
}

/** What a service's `start` gets to build its parts with. */
export interface ServiceParts<C> {
  config: C;
  log: Logger;
  /** Aborted once the process is asked to stop: start-up retries give up on it. */
  stopping: AbortSignal;
  /**
   * Registers how to stop a part that was just built. On SIGTERM the stops run one at a time in
   * the reverse order of registration, so a part stops before the parts it uses.
   */
  onStop(stop: () => unknown): void;
  /** How /readyz decides; not ready until this is called, nor once the process is stopping. */
  readyWhen(check: () => boolean | Promise<boolean>): void;
}

export interface ServiceSpec<C> {
  /** The service's name, as in its logs and `stepline-<name>` traces. */
  name: string;
  /** Reads the configuration from `env`; a ConfigError prints every problem and exits 1. */
  config: (env: NodeJS.ProcessEnv) => C;
  /** How long the stops may take before the process exits 1 anyway (20 s unless set). */
  shutdownDeadlineMs?: (config: C) => number;
  /**
   * Builds and starts the service's parts, and returns what the "started" log line shows (its
   * ports); a rejection exits 1 with its stack.
   */
  start(parts: ServiceParts<C>): Promise<Record<string, unknown>>;
}

/**
 * Runs a service process: configuration from `env` (with internal gRPC authentication turned on
 * from STEPLINE_INTERNAL_TOKEN), logger, traces (the OTEL_* variables of `env`), the admin port
 * (up before the parts, so /healthz answers while a dependency is still down), `start`, and the
 * stops on SIGTERM or SIGINT.
 */
export function runService<C extends CommonConfig>(spec: ServiceSpec<C>, env: NodeJS.ProcessEnv): void {
  run(spec, env).catch((err: unknown) => {
    process.stderr.write(
      `${spec.name} failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}

async function run<C extends CommonConfig>(spec: ServiceSpec<C>, env: NodeJS.ProcessEnv): Promise<void> {
  const config = serviceConfig(spec.name, () => spec.config(env));
  const log = createLogger(spec.name, config.STEPLINE_LOG_LEVEL);
  const stopTelemetry = await startTelemetry(`stepline-${spec.name}`, env);
  const stopping = new AbortController();
  const stops: Array<() => unknown> = [];
  let ready: (() => boolean | Promise<boolean>) | undefined;
  const admin = await startAdminServer(
    config.STEPLINE_ADMIN_PORT,
    () => !stopping.signal.aborted && ready !== undefined && ready(),
    config.STEPLINE_ADMIN_HOST,
  );
  onShutdown(
    log,
    async () => {
      stopping.abort();
      for (const stop of stops.reverse()) await stop();
      await admin.close();
      await stopTelemetry();
    },
    spec.shutdownDeadlineMs?.(config),
  );
  const started = await spec.start({
    config,
    log,
    stopping: stopping.signal,
    onStop: (stop) => {
      stops.push(stop);
    },
    readyWhen: (check) => {
      ready = check;
    },
  });
  if (!stopping.signal.aborted) log.info({ ...started, adminPort: admin.port }, `${spec.name} started`);
}

/**
 * A service's configuration, read with `load`: on a bad one the process prints every problem and
 * exits 1 (never a half-configured service). Then internal gRPC authentication is turned on with
 * its STEPLINE_INTERNAL_TOKEN, which production mode requires.
 */
function serviceConfig<C extends CommonConfig>(name: string, load: () => C): C {
  try {
    const config = load();
    useInternalToken(checkInternalToken(config));
    return config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(1);
  }
}

/** One metrics registry per process; services register their own metrics on it. */
export const metrics = new Registry();
// The event-loop lag histogram samples on a timer of this period. prom-client's default (10 ms)
// woke every idle process 100 times a second, and a wake-up from idle is what costs most CPU on a
// small VM (loadtest/README.md); saturation is better read from the utilization below anyway.
const LAG_SAMPLE_MS = 1_000;
collectDefaultMetrics({ register: metrics, eventLoopMonitoringPrecision: LAG_SAMPLE_MS });

let lastUtilization = performance.eventLoopUtilization();
new Gauge({
  name: "nodejs_eventloop_utilization_ratio",
  help: "Share of time the event loop was busy since the previous scrape (0-1); no timer behind it",
  registers: [metrics],
  collect() {
    const now = performance.eventLoopUtilization();
    this.set(performance.eventLoopUtilization(now, lastUtilization).utilization);
    lastUtilization = now;
  },
});

interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves /healthz (the process is alive), /readyz (the `ready` check passes: dependencies are
 * reachable and the service accepts work) and /metrics (Prometheus text).
 */
async function startAdminServer(
  port: number,
  ready: () => boolean | Promise<boolean>,
  host = "127.0.0.1",
): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      Promise.resolve()
        .then(ready)
        .then(
          (ok) =>
            res
              .writeHead(ok ? 200 : 503, { "content-type": "text/plain" })
              .end(ok ? "ready\n" : "not ready\n"),
          () => res.writeHead(503, { "content-type": "text/plain" }).end("not ready\n"),
        );
    } else if (path === "/metrics") {
      metrics.metrics().then(
        (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0 (1 if stop failed or overran `deadlineMs`).
 * Stop must end in-flight work cleanly: stop taking work, finish or release what is held,
 * commit offsets, close clients.
 */
function onShutdown(log: Logger, stop: () => Promise<void>, deadlineMs = 20_000): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      log.error({ deadlineMs }, "shutdown overran its deadline; exiting");
      process.exit(1);
    }, deadlineMs);
    timer.unref();
    stop().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}
