// Smoke test of the servers `npm test` starts (scripts/infra.mjs, profile test): each one answers
// a real request, so a failure elsewhere is not a broken Kafka, Redis or ClickHouse in disguise.
import { randomBytes } from "node:crypto";
import { createClient } from "@clickhouse/client";
import { createReadyTopics, requiredEnv } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { Kafka, logLevel, Partitioners } from "kafkajs";
import { describe, expect, it } from "vitest";

const kafkaBrokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS").split(",");
const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");
const clickhouseUrl = requiredEnv("STEPLINE_TEST_CLICKHOUSE_URL");

/** Rejects if promise has not settled within ms. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe("test infrastructure", () => {
  it("Redis answers PING", async () => {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      expect(await redis.ping()).toBe("PONG");
    } finally {
      redis.disconnect();
    }
  });

  it("ClickHouse answers SELECT 1", async () => {
    const client = createClient({ url: clickhouseUrl });
    try {
      const result = await client.query({ query: "SELECT 1 AS one", format: "JSONEachRow" });
      expect(await result.json()).toEqual([{ one: 1 }]);
    } finally {
      await client.close();
    }
  });

  it("Kafka gives back a message produced to a new topic", async () => {
    const topic = `smoke.infra.${randomBytes(6).toString("hex")}`;
    // Failures surface as rejections; kafkajs would also log the retries a fresh broker causes
    // ("group coordinator is not available" while it creates __consumer_offsets).
    const kafka = new Kafka({ clientId: "infra-test", brokers: kafkaBrokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    const consumer = kafka.consumer({ groupId: topic });
    await admin.connect();
    try {
      await createReadyTopics(admin, [{ topic, numPartitions: 1 }]);
      await producer.connect();
      await producer.send({ topic, acks: -1, messages: [{ key: "k1", value: "hello stepline" }] });

      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const received = new Promise<{ key: string; value: string }>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) =>
            resolve({ key: String(message.key), value: String(message.value) }),
        });
      });
      expect(await within(30_000, "message", received)).toEqual({ key: "k1", value: "hello stepline" });
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
      // Best effort: the name is unique, a leftover topic disturbs no other test.
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  });
});
