import { createRequire } from "node:module";
import { pino } from "pino";
import { expect, it } from "vitest";
import { createKafka } from "./kafka.js";
import { requiredEnv } from "./testing.js";

it("lets an idle, connected producer sleep instead of re-checking its request queue every millisecond", async () => {
  const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
  const require = createRequire(import.meta.url);
  const RequestQueue = require("kafkajs/src/network/requestQueue/index.js");
  const producer = createKafka(brokers, "idle-test", pino({ level: "silent" })).producer();
  await producer.connect();
  let checks = 0;
  const original = RequestQueue.prototype.checkPendingRequests;
  RequestQueue.prototype.checkPendingRequests = function (...args: unknown[]) {
    checks++;
    return original.apply(this, args);
  };
  try {
    // Unpatched kafkajs 2.2.4 checks about once a millisecond here (hundreds of times).
    await new Promise((r) => setTimeout(r, 500));
    expect(checks).toBeLessThan(5);
  } finally {
    RequestQueue.prototype.checkPendingRequests = original;
    await producer.disconnect();
  }
});
