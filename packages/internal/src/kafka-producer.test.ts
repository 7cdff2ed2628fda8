import { Partitioners, type PartitionMetadata } from "kafkajs";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createKafka } from "./kafka.js";
import { createProducer, javaPartitioner, sendRecords } from "./kafka-producer.js";
import { createReadyTopics, requiredEnv, uniqueTag } from "./testing.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
const kafka = createKafka(brokers, "kafka-producer-test", pino({ level: "silent" }));
const admin = kafka.admin();
const topic = `test-kafka-producer-${uniqueTag()}`;

beforeAll(async () => {
  await admin.connect();
  await createReadyTopics(admin, [{ topic, numPartitions: 5 }]);
});

afterAll(async () => {
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
});

const meta = (n: number): PartitionMetadata[] =>
  Array.from({ length: n }, (_, partitionId) => ({
    partitionId,
    leader: 1,
    replicas: [1],
    isr: [1],
    partitionErrorCode: 0,
  }));

it("hashes each key as kafkajs's (and Java's) default partitioner does, also when answered from memory", () => {
  const reference = Partitioners.DefaultPartitioner();
  const partition = javaPartitioner();
  const keys = Array.from({ length: 300 }, (_, i) => `acct-${i}-${(i * 7919).toString(36)}`);
  const spread = new Set<number>();
  for (const n of [16, 8, 5]) {
    for (const round of [1, 2]) {
      for (const key of keys) {
        const hash = partition({ topic, key, value: Buffer.from("v") }, Buffer.from(key), {
          metadata: undefined,
        });
        const expected = reference({ topic, partitionMetadata: meta(n), message: { key, value: "v" } });
        expect(hash % n, `${n} partitions, ${key}, round ${round}`).toBe(expected);
        if (n === 16) spread.add(hash % n);
      }
    }
  }
  expect(spread.size).toBe(16);
});

it("writes each keyed record to its key's partition on a real topic", async () => {
  const producer = createProducer({ brokers, clientId: "kafka-producer-test" });
  const reference = Partitioners.DefaultPartitioner();
  const keys = Array.from({ length: 20 }, (_, i) => `run-${i}`);
  try {
    // One key per send, so each partition's high watermark says where that record went.
    for (const key of keys) {
      const before = await admin.fetchTopicOffsets(topic);
      await producer.send({ messages: [{ topic, key, value: Buffer.from(key) }] });
      const after = await admin.fetchTopicOffsets(topic);
      const grew = after.filter((p) => p.high !== before.find((b) => b.partition === p.partition)?.high);
      const expected = reference({ topic, partitionMetadata: meta(5), message: { key, value: "v" } });
      expect(
        grew.map((p) => p.partition),
        key,
      ).toEqual([expected]);
    }
  } finally {
    await producer.close();
  }
});

it("takes a fresh producer id after a failed send, and keeps its id while sends succeed", async () => {
  const producer = createProducer({ brokers, clientId: "kafka-producer-test", retries: 2, retryFirstMs: 20 });
  const total = async () => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
  const record = (n: number) => ({ key: "renew", value: Buffer.from(String(n)) });
  try {
    const before = await total();
    await sendRecords(producer, topic, [record(1)]);
    const first = producer.producerId;
    await sendRecords(producer, topic, [record(2)]);
    expect(producer.producerId).toBe(first);
    // A topic that does not exist (auto-creation is off): the send fails once its retries are spent.
    await expect(sendRecords(producer, `${topic}-missing`, [record(3)])).rejects.toThrow();
    await sendRecords(producer, topic, [record(4)]);
    expect(first).toBeDefined();
    expect(producer.producerId).not.toBe(first);
    expect(await total()).toBe(before + 3);
  } finally {
    await producer.close();
  }
});
