import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { HistoryRecord, RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Consumer } from "kafkajs";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryEntry } from "./history.js";
import { HistoryProducer } from "./history.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");

const prefix = `test.exec.${uniqueTag()}.`;
const topic = `${prefix}history`;
const kafka = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING });
const log = createLogger("executor-test", "silent");
const received: Array<{ key: string; record: HistoryRecord }> = [];
let consumer: Consumer;

beforeAll(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await createReadyTopics(admin, [{ topic, numPartitions: 2 }]);
  await admin.disconnect();
  consumer = kafka.consumer({ groupId: `${prefix}reader` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (!message.value) return;
      received.push({ key: String(message.key), record: HistoryRecord.decode(message.value) });
    },
  });
}, 60_000);

afterAll(async () => {
  await consumer?.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
});

function run(runId: string, version: number): HistoryEntry {
  return {
    $case: "run",
    value: {
      runId,
      accountId: "a",
      environmentId: "e",
      functionId: "f",
      eventId: "ev",
      status: version === 1 ? RunStatus.RUN_STATUS_RUNNING : RunStatus.RUN_STATUS_COMPLETED,
      startedAtMs: 1,
      endedAtMs: version === 1 ? 0 : 2,
      outputJson: version === 1 ? "" : "42",
      errorJson: "",
      version,
    },
  };
}

describe("history producer", () => {
  it("produces run and step records keyed by run id, decodable as HistoryRecord", async () => {
    const producer = new HistoryProducer(kafka, { topic, timeoutMs: 10_000, maxBacklog: 100 }, log);
    await producer.start();
    const step: HistoryEntry = {
      $case: "step",
      value: {
        runId: "r1",
        accountId: "a",
        environmentId: "e",
        stepId: "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
        name: "a",
        status: StepStatus.STEP_STATUS_COMPLETED,
        attempt: 0,
        atMs: 5,
        outputJson: "2",
        errorJson: "",
      },
    };
    // Two concurrent sends are merged into batches; both resolve once Kafka acknowledged them.
    await Promise.all([
      producer.produce([run("r1", 1), step]),
      producer.produce([run("r2", 1), run("r1", 2)]),
    ]);
    await waitFor(
      "four records of r1 and r2",
      () => received.filter((r) => ["r1", "r2"].includes(r.key)).length >= 4,
      {
        timeoutMs: 30_000,
      },
    );
    const r1 = received.filter((r) => r.key === "r1").map((r) => r.record.record);
    expect(r1).toContainEqual(step);
    expect(r1).toContainEqual(run("r1", 2));
    await producer.stop();
  }, 60_000);

  it("does not hold callers up while Kafka is unreachable, and sends the records once it is back", async () => {
    const producer = new HistoryProducer(kafka, { topic, timeoutMs: 500, maxBacklog: 100 }, log);
    // Not connected yet: the send fails, record() still returns, and the records wait in the backlog.
    const t0 = Date.now();
    await producer.record([run("late-1", 2)]);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await producer.start();
    await waitFor("the late record", () => received.some((r) => r.key === "late-1"), { timeoutMs: 30_000 });
    await producer.stop();
  }, 60_000);
});
