import { createRequire } from "node:module";
import { Partitioners, type PartitionMetadata } from "kafkajs";
import { pino } from "pino";
import { expect, it, vi } from "vitest";
import { createKafka, KeyedPartitioner } from "./kafka.js";
import { requiredEnv } from "./testing.js";

it("lets an idle, connected producer sleep instead of re-checking its request queue every millisecond", async () => {
  const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
  const require = createRequire(import.meta.url);
  const RequestQueue = require("kafkajs/src/network/requestQueue/index.js");
  let checks = 0;
  const original = RequestQueue.prototype.checkPendingRequests;
  RequestQueue.prototype.checkPendingRequests = function (...args: unknown[]) {
    checks++;
    return original.apply(this, args);
  };
  // The producer's timers are faked from the start, so its clock moves only when the test says:
  // half a second of it passes below without any real waiting.
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  const producer = createKafka(brokers, "idle-test", pino({ level: "silent" })).producer();
  try {
    await producer.connect();
    const connected = checks;
    // Unpatched kafkajs 2.2.4 re-checks about once a millisecond here (hundreds of times).
    await vi.advanceTimersByTimeAsync(500);
    expect(checks - connected).toBeLessThan(5);
  } finally {
    vi.useRealTimers();
    RequestQueue.prototype.checkPendingRequests = original;
    await producer.disconnect();
  }
});

it("puts each key on the default partitioner's partition, also after the partition count changed", () => {
  const meta = (n: number): PartitionMetadata[] =>
    Array.from({ length: n }, (_, partitionId) => ({
      partitionId,
      leader: 1,
      replicas: [1],
      isr: [1],
      partitionErrorCode: 0,
    }));
  const keyed = KeyedPartitioner();
  const reference = Partitioners.DefaultPartitioner();
  const keys = Array.from({ length: 300 }, (_, i) => `acct-${i}-${(i * 7919).toString(36)}`);
  const spread = new Set<number>();
  for (const [topic, n] of [
    ["events", 16],
    ["history", 8],
    ["events", 5],
  ] as const) {
    // Twice each: the second round is answered from what the first remembered.
    for (const round of [1, 2]) {
      for (const key of keys) {
        const args = { topic, partitionMetadata: meta(n), message: { key, value: "v" } };
        const got = keyed(args);
        expect(got, `${topic}/${n} ${key} round ${round}`).toBe(reference(args));
        if (n === 16) spread.add(got);
      }
    }
  }
  // The keys do spread (a partitioner answering one constant would fail above anyway).
  expect(spread.size).toBe(16);
  // A message's own partition wins; one without a key goes round-robin, as with the default.
  expect(
    keyed({ topic: "events", partitionMetadata: meta(16), message: { key: "k", value: "v", partition: 3 } }),
  ).toBe(3);
  const unkeyed = new Set(
    Array.from({ length: 32 }, () =>
      keyed({ topic: "events", partitionMetadata: meta(16), message: { value: "v" } }),
    ),
  );
  expect(unkeyed.size).toBe(16);
});
