import { createProducer } from "@stepline/internal/kafka-producer";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { HistoryRecord, RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Consumer } from "kafkajs";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryEntry } from "./history.js";
import { HISTORY_RECORD_MAX_BYTES, HistoryProducer } from "./history.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");

const prefix = `test.exec.${uniqueTag()}.`;
const topic = `${prefix}history`;
/** A topic that takes messages up to 100 kB only, so a record of 200 kB is refused for its size. */
const smallTopic = `${prefix}small`;
const kafka = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING });
const log = createLogger("executor-test", "silent");
const client = () => createProducer({ brokers, clientId: "executor-test" });
const received: Array<{ key: string; record: HistoryRecord }> = [];
let consumer: Consumer;

beforeAll(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await createReadyTopics(admin, [
    // As scripts/infra/kafka.mjs makes the history topic.
    { topic, numPartitions: 2, configEntries: [{ name: "max.message.bytes", value: "8388608" }] },
    { topic: smallTopic, numPartitions: 1, configEntries: [{ name: "max.message.bytes", value: "100000" }] },
  ]);
  await admin.disconnect();
  consumer = kafka.consumer({ groupId: `${prefix}reader` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic, smallTopic], fromBeginning: true });
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
  await admin.deleteTopics({ topics: [topic, smallTopic] }).catch(() => undefined);
  await admin.disconnect();
});

function step(runId: string, stepId: string, outputJson: string): HistoryEntry {
  return {
    $case: "step",
    value: {
      runId,
      accountId: "a",
      environmentId: "e",
      stepId,
      name: stepId,
      status: StepStatus.STEP_STATUS_COMPLETED,
      attempt: 0,
      atMs: 5,
      startedAtMs: 4,
      outputJson,
      errorJson: "",
    },
  };
}

const big = (bytes: number) => JSON.stringify("x".repeat(bytes));
const stepsOf = (runId: string) =>
  received.flatMap((r) =>
    r.key === runId && r.record.record?.$case === "step" ? [r.record.record.value] : [],
  );

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
    const producer = new HistoryProducer(
      client(),
      { topic, timeoutMs: 10_000, maxBacklogBytes: 1_000_000 },
      log,
    );
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
        startedAtMs: 4,
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

  it("sends records that arrive within the linger in one request, and a strict record at once, taking them along", async () => {
    // The same Kafka, with the producer's sends counted.
    const sends: number[] = [];
    const counting = client();
    const realSend = counting.send.bind(counting);
    counting.send = ((options: Parameters<typeof realSend>[0]) => {
      sends.push(options.messages.length);
      return realSend(options);
    }) as typeof counting.send;
    const producer = new HistoryProducer(
      counting,
      { topic, timeoutMs: 10_000, maxBacklogBytes: 1_000_000, lingerMs: 300 },
      log,
    );
    await producer.start();
    const recorded = Promise.all([
      producer.record([step("lg1", "a", "1")]),
      producer.record([step("lg1", "b", "2")]),
      producer.record([step("lg2", "a", "3")]),
    ]);
    // Within the linger nothing goes; the run record does not wait for it, and takes them along.
    expect(sends).toEqual([]);
    await producer.produce([run("lg1", 2)]);
    await recorded;
    expect(sends).toEqual([4]);
    await waitFor("the four records", () => received.filter((r) => r.key.startsWith("lg")).length >= 4, {
      timeoutMs: 30_000,
    });
    // A record alone goes once its linger ends; stop sends one that is still waiting.
    await producer.record([step("lg3", "a", "4")]);
    expect(sends).toEqual([4, 1]);
    void producer.record([step("lg4", "a", "5")]);
    await producer.stop();
    expect(sends).toEqual([4, 1, 1]);
  }, 60_000);

  it("does not hold callers up while Kafka is unreachable, and sends the records once it is back", async () => {
    const producer = new HistoryProducer(
      client(),
      { topic, timeoutMs: 500, maxBacklogBytes: 1_000_000 },
      log,
    );
    // Not connected yet: the send fails, record() still returns, and the records wait in the backlog.
    const t0 = Date.now();
    await producer.record([run("late-1", 2)]);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await producer.start();
    await waitFor("the late record", () => received.some((r) => r.key === "late-1"), { timeoutMs: 30_000 });
    await producer.stop();
  }, 60_000);

  it("sends outputs of 3 MiB whole, several in a row, in sends the topic takes", async () => {
    const producer = new HistoryProducer(
      client(),
      { topic, timeoutMs: 10_000, maxBacklogBytes: 64 << 20 },
      log,
    );
    await producer.start();
    // One key, so one partition: the three sent while the first is in flight would make one batch
    // of 9 MiB, past the topic's limit, were sends not capped in bytes.
    const ids = ["s1", "s2", "s3", "s4"];
    await Promise.all(ids.map((id) => producer.produce([step("large-run", id, big(3 << 20))])));
    await waitFor("four large steps", () => stepsOf("large-run").length >= 4, { timeoutMs: 30_000 });
    expect(stepsOf("large-run").map((s) => [s.stepId, s.outputJson.length])).toEqual(
      ids.map((id) => [id, (3 << 20) + 2]),
    );
    await producer.stop();
  }, 60_000);

  it("leaves out an output that would make a record larger than history keeps, and says so", async () => {
    const producer = new HistoryProducer(
      client(),
      { topic, timeoutMs: 10_000, maxBacklogBytes: 1_000_000 },
      log,
    );
    await producer.start();
    await producer.produce([step("huge-run", "huge", big(HISTORY_RECORD_MAX_BYTES))]);
    await waitFor("the huge step's record", () => stepsOf("huge-run").length >= 1, { timeoutMs: 30_000 });
    const [got] = stepsOf("huge-run");
    expect(JSON.parse(got?.outputJson ?? "")).toEqual({
      stepline_omitted: `this output (${HISTORY_RECORD_MAX_BYTES + 2} bytes) is larger than history keeps; the run's state had it`,
    });
    expect(got?.status).toBe(StepStatus.STEP_STATUS_COMPLETED);
    await producer.stop();
  }, 60_000);

  it("leaves out a record it cannot encode (a bug) and sends the others, without rejecting", async () => {
    const producer = new HistoryProducer(
      client(),
      { topic, timeoutMs: 10_000, maxBacklogBytes: 1_000_000 },
      log,
    );
    await producer.start();
    const broken = step("unencodable-run", "fraction", "1");
    if (broken.$case === "step") broken.value.startedAtMs = 1.5; // int64 takes whole numbers only
    await producer.record([broken, step("unencodable-run", "fine", "2")]);
    await producer.produce([broken, step("unencodable-run", "fine-strict", "3")]);
    await waitFor("the fine records", () => stepsOf("unencodable-run").length >= 2, { timeoutMs: 30_000 });
    expect(
      stepsOf("unencodable-run")
        .map((s) => s.stepId)
        .sort(),
    ).toEqual(["fine", "fine-strict"]);
    await producer.stop();
  }, 60_000);

  it("sets a record Kafka refuses aside and sends the others, however it was sent", async () => {
    const producer = new HistoryProducer(
      client(),
      { topic: smallTopic, timeoutMs: 10_000, maxBacklogBytes: 1_000_000 },
      log,
    );
    await producer.start();
    // Strict: resolves (the refused record can never be sent), and the fine ones are in Kafka.
    await producer.produce([step("refused-run", "ok-1", "1"), step("refused-run", "too-big", big(200_000))]);
    // Background: the refused record never blocks the ones after it.
    await producer.record([step("refused-run", "too-big-2", big(200_000)), step("refused-run", "ok-2", "2")]);
    await producer.record([step("refused-run", "ok-3", "3")]);
    await waitFor("the three fine records", () => stepsOf("refused-run").length >= 3, { timeoutMs: 30_000 });
    expect(
      stepsOf("refused-run")
        .map((s) => s.stepId)
        .sort(),
    ).toEqual(["ok-1", "ok-2", "ok-3"]);
    await producer.stop();
  }, 60_000);

  it("keeps at most its byte bound for the background retry, dropping the oldest records", async () => {
    const producer = new HistoryProducer(client(), { topic, timeoutMs: 500, maxBacklogBytes: 1_000 }, log);
    // Not connected: each record waits for the retry; three of ~600 bytes do not fit in 1,000.
    for (const id of ["b1", "b2", "b3"]) await producer.record([step("bounded-run", id, big(500))]);
    await producer.start();
    await waitFor("the newest record", () => stepsOf("bounded-run").length >= 1, { timeoutMs: 30_000 });
    // One run, one partition: older records would have arrived before it.
    expect(stepsOf("bounded-run").map((s) => s.stepId)).toEqual(["b3"]);
    await producer.stop();
  }, 60_000);
});
