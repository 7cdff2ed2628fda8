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

/**
 * Counts what `client` hands its socket from now on (connect it first): one count per socket
 * write, so a pipeline counts once however many commands it carries.
 */
export function countSocketWrites(client: Redis): { readonly count: number } {
  const stream = (client as unknown as { stream?: { write(...args: unknown[]): boolean } }).stream;
  if (!stream) throw new Error("countSocketWrites: the client is not connected yet");
  const write = stream.write.bind(stream);
  const counter = { count: 0 };
  stream.write = (...args: unknown[]) => {
    counter.count++;
    return write(...args);
  };
  return counter;
}
