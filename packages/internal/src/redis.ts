// Redis client setup. Commands fail fast while disconnected (no unbounded offline queue), so a
// Redis outage surfaces as an UnavailableError instead of silently piling up work in memory.
import { Redis } from "ioredis";
import type { Logger } from "./log.js";

/** Creates a Redis client for `url` (redis://host:port/db). */
export function createRedis(url: string, log: Logger): Redis {
  const client = new Redis(url, {
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    connectTimeout: 3_000,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    lazyConnect: false,
  });
  let lastError = "";
  client.on("error", (err: Error) => {
    // One line per distinct error, not one per reconnect attempt.
    if (err.message !== lastError) log.warn({ err: err.message }, "redis error");
    lastError = err.message;
  });
  client.on("ready", () => {
    lastError = "";
  });
  return client;
}
