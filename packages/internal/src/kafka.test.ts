import { createRequire } from "node:module";
import { pino } from "pino";
import { expect, it, vi } from "vitest";
import { createKafka } from "./kafka.js";
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
