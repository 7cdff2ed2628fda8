// Test support (not part of the build): a Redis client for the server named by
// STEPLINE_TEST_REDIS_URL, and a fresh key namespace per test so tests never collide.
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import { Redis } from "ioredis";

/** The test Redis URL; fails loudly when it is not set. */
export function testRedisUrl(): string {
  return requiredEnv("STEPLINE_TEST_REDIS_URL");
}

/** A new client for the test Redis. */
export function testRedis(): Redis {
  return new Redis(testRedisUrl(), { maxRetriesPerRequest: 2 });
}

/** A namespace no other test uses ("t<random>:"). */
export function testNamespace(): string {
  return `t${uniqueTag()}:`;
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
