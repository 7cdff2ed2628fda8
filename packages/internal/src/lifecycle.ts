// Process lifecycle shared by every service: the admin HTTP port (/healthz, /readyz, /metrics)
// and one graceful shutdown on SIGTERM/SIGINT.

import type { Server } from "node:http";
import { createServer } from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";
import { ConfigError, checkInternalToken } from "./config.js";
import { useInternalToken } from "./grpc.js";
import type { Logger } from "./log.js";

/**
 * A service's configuration, read with `load`: on a bad one the process prints every problem and
 * exits 1 (never a half-configured service). Then internal gRPC authentication is turned on with
 * its STEPLINE_INTERNAL_TOKEN, which production mode requires.
 */
export function serviceConfig<C extends { STEPLINE_DEV: boolean; STEPLINE_INTERNAL_TOKEN: string }>(
  name: string,
  load: () => C,
): C {
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
collectDefaultMetrics({ register: metrics });

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves /healthz (the process is alive), /readyz (the `ready` check passes: dependencies are
 * reachable and the service accepts work) and /metrics (Prometheus text).
 */
export async function startAdminServer(
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
export function onShutdown(log: Logger, stop: () => Promise<void>, deadlineMs = 20_000): void {
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
