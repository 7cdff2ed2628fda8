import { createClickHouse } from "@stepline/internal/clickhouse";
import { NotFoundError } from "@stepline/internal/errors";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import {
  HistoryServiceClient,
  HistoryServiceService,
} from "@stepline/proto/stepline/history/v1/history_service";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { RunRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { HistoryRecord, RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryConsumer } from "./consumer.js";
import { createHistoryConsumer } from "./consumer.js";
import type { Rows } from "./rows.js";
import type { TableName } from "./schema.js";
import { historyService } from "./server.js";
import { HistoryStore } from "./store.js";
import type { TestDatabase } from "./test-support.js";
import { createTestDatabase, runRecord, stepRecord } from "./test-support.js";

const clickhouseUrl = requiredEnv("STEPLINE_TEST_CLICKHOUSE_URL");
const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
const log = createLogger("history-test", "silent");
const prefix = `${uniqueTag("t_history")}.`;
// Kafka group joins and ClickHouse inserts can take a while on a busy machine.
const WAIT = { timeoutMs: 20_000 };
const topic = topicNames(prefix).history;
const eventsTopic = topicNames(prefix).events;
const kafka = createKafka(brokers, "history-test", log);
const admin = kafka.admin();
const producer = kafka.producer();
let t: TestDatabase;
const running: HistoryConsumer[] = [];
const groups = new Set<string>();

beforeAll(async () => {
  t = await createTestDatabase(clickhouseUrl);
  await admin.connect();
  // As scripts/infra/kafka.mjs makes the history topic.
  const configEntries = [{ name: "max.message.bytes", value: "8388608" }];
  await createReadyTopics(admin, [
    { topic, numPartitions: 2, replicationFactor: 1, configEntries },
    { topic: eventsTopic, numPartitions: 2, replicationFactor: 1 },
  ]);
  await producer.connect();
});
afterAll(async () => {
  for (const c of running) await c.stop();
  await producer.disconnect();
  await admin.deleteTopics({ topics: [topic, eventsTopic] }).catch(() => undefined);
  await admin.deleteGroups([...groups]).catch(() => undefined);
  await admin.disconnect();
  await t?.drop();
});

function startConsumer(store: HistoryStore, group = groupName(prefix, "history")): HistoryConsumer {
  const consumer = createHistoryConsumer({
    kafka,
    store,
    log,
    topic,
    eventsTopic,
    groupId: group,
    batchWaitMs: 100,
    batchMinBytes: 1,
    batchMaxBytes: 1024 * 1024,
    flushMs: 50,
    partitionsConsumedConcurrently: 4,
    retryMaxMs: 200,
  });
  running.push(consumer);
  groups.add(group);
  return consumer;
}

async function produce(...records: HistoryRecord[]): Promise<void> {
  await producer.send({
    topic,
    messages: records.map((r) => ({
      key: r.record?.$case === "skip" ? r.record.value.eventId : (r.record?.value.runId ?? ""),
      value: Buffer.from(HistoryRecord.encode(r).finish()),
    })),
  });
}

async function committedOffsets(group: string): Promise<number> {
  const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
}

describe("history consumer", () => {
  it("stores the events topic too: ListEvents and GetEvent over gRPC return what was received", async () => {
    const consumer = startConsumer(t.store, groupName(prefix, "history-events"));
    await consumer.start();
    const server = await startGrpcServer("127.0.0.1:0", [
      { definition: HistoryServiceService, implementation: historyService(t.store, log) },
    ]);
    const client = createClient(HistoryServiceClient, `127.0.0.1:${server.port}`);
    try {
      const eventId = newId();
      const eventJson = JSON.stringify({
        name: "shop/order.placed",
        data: { total: 20 },
        id: eventId,
        ts: 5,
      });
      const record = {
        accountId: "acct_1",
        environmentId: "env_ev",
        eventId,
        receivedAtMs: 5,
        eventJson,
        traceParent: "",
        // A record from before EventRecord.name: history reads the name from the JSON.
        name: "",
      };
      await producer.send({
        topic: eventsTopic,
        messages: [{ key: "acct_1", value: Buffer.from(EventRecord.encode(record).finish()) }],
      });
      const listed = await waitFor(
        "the event listed",
        async () => {
          const r = await callUnary(client.listEvents.bind(client), {
            environmentId: "env_ev",
            name: "",
            receivedAfterMs: 0,
            receivedBeforeMs: 0,
            limit: 10,
            cursor: "",
          });
          return r.events.length > 0 ? r : undefined;
        },
        WAIT,
      );
      const stored = { eventId, name: "shop/order.placed", receivedAtMs: 5, eventJson };
      expect(listed).toEqual({ events: [stored], nextCursor: "" });
      const got = await callUnary(client.getEvent.bind(client), { environmentId: "env_ev", eventId });
      expect(got.event).toEqual(stored);
      await expect(
        callUnary(client.getEvent.bind(client), { environmentId: "env_ev", eventId: "unknown" }),
      ).rejects.toThrow(/not found/);
    } finally {
      client.close();
      await server.close();
    }
  });

  it("stores produced records so GetRun and ListEventRuns over gRPC return the newest state", async () => {
    const consumer = startConsumer(t.store);
    await consumer.start();
    const server = await startGrpcServer("127.0.0.1:0", [
      { definition: HistoryServiceService, implementation: historyService(t.store, log) },
    ]);
    const client = createClient(HistoryServiceClient, `127.0.0.1:${server.port}`);
    try {
      const first = runRecord({ environmentId: "env_grpc" });
      const done: RunRecord = {
        ...first,
        status: RunStatus.RUN_STATUS_COMPLETED,
        endedAtMs: first.startedAtMs + 10,
        outputJson: '{"hello":"world"}',
        version: 2,
      };
      const step = stepRecord({ runId: first.runId, environmentId: "env_grpc" });
      await produce(
        { traceParent: "", record: { $case: "run", value: first } },
        { traceParent: "", record: { $case: "step", value: step } },
        { traceParent: "", record: { $case: "run", value: done } },
      );

      const res = await waitFor(
        "the completed run over gRPC",
        async () => {
          const r = await callUnary(client.getRun.bind(client), {
            environmentId: "env_grpc",
            runId: first.runId,
          });
          return r.run?.status === RunStatus.RUN_STATUS_COMPLETED ? r : undefined;
        },
        WAIT,
      );
      expect(res.run).toEqual({
        runId: first.runId,
        accountId: first.accountId,
        environmentId: "env_grpc",
        functionId: first.functionId,
        eventId: first.eventId,
        status: RunStatus.RUN_STATUS_COMPLETED,
        startedAtMs: first.startedAtMs,
        endedAtMs: done.endedAtMs,
        outputJson: '{"hello":"world"}',
        errorJson: "",
      });
      // Each table of a batch is its own insert, so the event index may land a moment later.
      const listed = await waitFor(
        "the run listed under its event",
        async () => {
          const r = await callUnary(client.listEventRuns.bind(client), {
            environmentId: "env_grpc",
            eventId: first.eventId,
          });
          return r.runs.length > 0 ? r : undefined;
        },
        WAIT,
      );
      expect(listed.runs.map((r) => r.runId)).toEqual([first.runId]);
      expect(await t.store.listSteps("env_grpc", first.runId)).toHaveLength(1);
      await expect(
        callUnary(client.getRun.bind(client), { environmentId: "env_other", runId: first.runId }),
      ).rejects.toBeInstanceOf(NotFoundError);
      await waitFor(
        "offsets committed",
        async () => (await committedOffsets(groupName(prefix, "history"))) >= 3,
        WAIT,
      );
    } finally {
      client.close();
      await server.close();
      await consumer.stop();
    }
  });

  it("stores a record of 5 MiB, larger than one fetch", async () => {
    const consumer = startConsumer(t.store, groupName(`${prefix}large.`, "history"));
    await consumer.start();
    const output = JSON.stringify("x".repeat(5 << 20));
    const run = runRecord({
      environmentId: "env_large",
      status: RunStatus.RUN_STATUS_COMPLETED,
      outputJson: output,
      version: 2,
    });
    await produce({ traceParent: "", record: { $case: "run", value: run } });
    const stored = await waitFor(
      "the large run",
      () => t.store.getRun("env_large", run.runId).then((r) => r ?? undefined),
      WAIT,
    );
    expect(stored.outputJson.length).toBe(output.length);
    await consumer.stop();
  });

  it("while ClickHouse refuses inserts it commits nothing, and another member later stores the batch", async () => {
    const group = groupName(`${prefix}outage.`, "history");
    // A real outage: nothing listens on this port.
    const deadStore = new CountingStore(createClickHouse("http://127.0.0.1:1"), t.database);
    const down = startConsumer(deadStore, group);
    await down.start();
    const record = runRecord({ environmentId: "env_outage" });
    await produce({ traceParent: "", record: { $case: "run", value: record } });

    await waitFor("several failed insert attempts", async () => deadStore.attempts >= 3, WAIT);
    expect(await committedOffsets(group)).toBe(0);
    await down.stop(); // must end the retry loop promptly, without committing

    expect(await committedOffsets(group)).toBe(0);
    const up = startConsumer(t.store, group);
    await up.start();
    const stored = await waitFor(
      "the delayed run",
      () => t.store.getRun("env_outage", record.runId).then((r) => r ?? undefined),
      WAIT,
    );
    expect(stored.runId).toBe(record.runId);
    await up.stop();
  });
});

describe("a row ClickHouse refuses", () => {
  let narrow: TestDatabase;
  beforeAll(async () => {
    narrow = await createTestDatabase(clickhouseUrl);
    // A real refusal: this database keeps step names in 8 bytes, so a longer name is refused
    // (Code 131, too large value for FixedString) while every other row is fine.
    await narrow.ch.command({
      query: `ALTER TABLE ${narrow.database}.steps MODIFY COLUMN name FixedString(8)`,
    });
  });
  afterAll(async () => {
    await narrow?.drop();
  });

  const count = async (query: string) => {
    const rs = await narrow.ch.query({ query, format: "JSONEachRow" });
    return Number((await rs.json<{ n: string }>())[0]?.n ?? 0);
  };

  it("is set aside in dead_letters; the rest of its batch is stored, its offset committed, and later batches go on", async () => {
    const group = groupName(`${prefix}poison.`, "history");
    const consumer = startConsumer(narrow.store, group);
    await consumer.start();
    const run = runRecord({ environmentId: "env_poison" });
    const step = (name: string, stepId: string) =>
      ({
        traceParent: "",
        record: { $case: "step", value: stepRecord({ runId: run.runId, name, stepId }) },
      }) as const;
    const records: HistoryRecord[] = [
      { traceParent: "", record: { $case: "run", value: run } },
      step("ok-1", "s1"),
      step("ok-2", "s2"),
      step("much-too-long-a-name", "s3"),
      step("ok-4", "s4"),
      step("ok-5", "s5"),
    ];
    await produce(...records);
    const db = narrow.database;
    await waitFor(
      "the good steps and the set-aside one",
      async () =>
        (await count(`SELECT count() AS n FROM ${db}.steps WHERE run_id = '${run.runId}'`)) === 4 &&
        (await count(`SELECT count() AS n FROM ${db}.dead_letters`)) === 1,
      WAIT,
    );
    const rs = await narrow.ch.query({
      query: `SELECT table_name, row_json, error FROM ${db}.dead_letters`,
      format: "JSONEachRow",
    });
    const [dead] = await rs.json<{ table_name: string; row_json: string; error: string }>();
    expect(dead?.table_name).toBe("steps");
    expect(JSON.parse(dead?.row_json ?? "{}")).toMatchObject({
      run_id: run.runId,
      step_id: "s3",
      name: "much-too-long-a-name",
    });
    expect(dead?.error).toMatch(/131|FixedString/);
    expect(await narrow.store.getRun("env_poison", run.runId)).toMatchObject({ runId: run.runId });
    await waitFor(
      "the batch's offsets committed",
      async () => (await committedOffsets(group)) >= records.length,
      WAIT,
    );

    const later = runRecord({ environmentId: "env_poison" });
    await produce({ traceParent: "", record: { $case: "run", value: later } });
    await waitFor(
      "a later batch",
      () => narrow.store.getRun("env_poison", later.runId).then((r) => r ?? undefined),
      WAIT,
    );
    await consumer.stop();
  });
});

/** A real store that counts insert attempts, so the test can wait for retries instead of sleeping. */
class CountingStore extends HistoryStore {
  attempts = 0;
  override async insert<T extends TableName>(table: T, rows: Rows[T]): Promise<void> {
    this.attempts++;
    return super.insert(table, rows);
  }
}
