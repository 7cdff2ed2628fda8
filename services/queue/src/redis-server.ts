// Private redis-servers and namespace clean-up, for the benchmark (bench.ts) and the tests that
// need servers of their own (the Redis Cluster test); not used by the service.
import { spawn } from "node:child_process";
import { freePort, waitFor } from "@stepline/internal/testing";
import { Redis } from "ioredis";

/** Deletes every key of `namespace`. */
export async function dropNamespace(redis: Redis, namespace: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `q:{${namespace}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

/** A redis-server process this code started. */
export interface RedisServer {
  port: number;
  url: string;
  stop(): void;
}

/**
 * Starts a private redis-server (the installed one) on a free loopback port, without persistence,
 * with `extraArgs` appended, and resolves once it answers PING. For benchmarks and the Redis
 * Cluster test, which need servers of their own.
 */
export async function startRedisServer(extraArgs: string[] = []): Promise<RedisServer> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extraArgs],
    { stdio: "ignore" },
  );
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  probe.on("error", () => {}); // refused until the server listens: waitFor retries
  try {
    await waitFor(`redis-server on ${port}`, async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      try {
        if (probe.status !== "ready") await probe.connect();
        return (await probe.ping()) === "PONG";
      } catch {
        return false;
      }
    });
  } finally {
    probe.disconnect();
  }
  return { port, url, stop: () => void child.kill("SIGKILL") };
}
