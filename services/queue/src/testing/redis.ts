// Test support (not part of the build): a Redis client for the server named by
// STEPLINE_TEST_REDIS_URL, and a fresh key namespace per test so tests never collide.
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";

/** The test Redis URL; fails loudly when it is not set. */
export function testRedisUrl(): string {
  const url = process.env.STEPLINE_TEST_REDIS_URL;
  if (!url) throw new Error("STEPLINE_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:26379)");
  return url;
}

/** A new client for the test Redis. */
export function testRedis(): Redis {
  return new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
}

/** A namespace no other test uses ("t<random>:"). */
export function testNamespace(): string {
  return `t${randomBytes(6).toString("hex")}:`;
}

/** Deletes every key of `namespace`. */
export async function dropNamespace(redis: Redis, namespace: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `q:{${namespace}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
