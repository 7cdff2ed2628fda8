// A test's own events topic on the test Kafka, with a connected EventProducer on it: what an HTTP
// test of event-api needs to take events for real. `stop` stops the producer and deletes the topic.
import type { createKafka } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import type { Logger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv } from "@stepline/internal/testing";
import type { Admin } from "kafkajs";
import { EventProducer } from "./producer.js";

export interface EventsTopic {
  admin: Admin;
  producer: EventProducer;
  /** Records on the topic (the sum of its partitions' high watermarks). */
  count(): Promise<number>;
  stop(): Promise<void>;
}

export async function startEventsTopic(
  kafka: ReturnType<typeof createKafka>,
  topic: string,
  log: Logger,
): Promise<EventsTopic> {
  const admin = kafka.admin();
  await admin.connect();
  await createReadyTopics(admin, [{ topic, numPartitions: 1 }]);
  const client = createProducer({
    brokers: requiredEnv("STEPLINE_TEST_KAFKA_BROKERS"),
    clientId: "event-api-test",
  });
  const producer = new EventProducer(client, { topic, timeoutMs: 10_000, log });
  producer.start();
  await producer.whenConnected();
  return {
    admin,
    producer,
    count: async () => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0),
    stop: async () => {
      await producer.stop();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    },
  };
}
