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

export type { RedisServer } from "../redis-server.js";
export { dropNamespace, startRedisServer } from "../redis-server.js";
