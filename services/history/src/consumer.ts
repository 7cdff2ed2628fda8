// The `<prefix>history` consumer, with group commit: the batches of every partition (consumed
// concurrently) gather in one buffer that is written at most every `flushMs` (or once it holds
// `batchMaxBytes`), as one ClickHouse insert per table, so ClickHouse sees a few large inserts a
// second whatever the load (small frequent inserts cost it CPU and merges). A batch's offset is
// resolved only after the flush holding its rows succeeded, and committed by kafkajs right after;
// while ClickHouse is down the flush is retried with backoff (the waiting batches heartbeat, so the
// group keeps their partitions) and nothing is committed.
import { isDataRejection } from "@stepline/internal/clickhouse";
import type { createKafka } from "@stepline/internal/kafka";
import type { Logger } from "@stepline/internal/log";
import { retry } from "@stepline/internal/retry";
import { recordSpan, tracingEnabled } from "@stepline/internal/telemetry";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { HistoryRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { deadLettersTotal } from "./metrics.js";
import type { Rows } from "./rows.js";
import { rowsOf } from "./rows.js";
import type { TableName } from "./schema.js";
import type { HistoryStore } from "./store.js";

type Kafka = ReturnType<typeof createKafka>;
type Consumer = ReturnType<Kafka["consumer"]>;
type RunConfig = NonNullable<Parameters<Consumer["run"]>[0]>;
type EachBatchPayload = Parameters<NonNullable<RunConfig["eachBatch"]>>[0];
type KafkaMessage = EachBatchPayload["batch"]["messages"][number];

export interface ConsumerOptions {
  kafka: Kafka;
  store: HistoryStore;
  log: Logger;
  topic: string;
  /** The events topic, also stored (the events table), when set. */
  eventsTopic?: string;
  groupId: string;
  batchWaitMs: number;
  batchMinBytes: number;
  batchMaxBytes: number;
  /** Longest time rows wait in the group-commit buffer before they are written. */
  flushMs: number;
  /** Partitions consumed at once (their batches share a flush). */
  partitionsConsumedConcurrently: number;
  retryMaxMs: number;
  /** Called when kafkajs gives up on the consumer (a crash it will not restart from). */
  onFatal?: (err: Error) => void;
}

export interface HistoryConsumer {
  /** Connects, subscribes (from the beginning for a new group) and starts consuming. */
  start(): Promise<void>;
  /** Stops consuming: an in-flight retry loop ends without committing, then the group is left. */
  stop(): Promise<void>;
  /** True while the consumer is a member of its group (readiness). */
  joined(): boolean;
}

/** Decodes a batch's messages; undecodable ones are logged and dropped (retrying cannot fix them). */
function decode<T>(messages: KafkaMessage[], type: { decode(b: Uint8Array): T }, log: Logger): T[] {
  const out: T[] = [];
  for (const m of messages) {
    if (!m.value) continue;
    try {
      out.push(type.decode(m.value));
    } catch (err) {
      log.warn({ err, offset: m.offset }, "dropping undecodable record");
    }
  }
  return out;
}

/** A traced record's span: from its batch's arrival to the stored insert that holds it. */
function traceWrites(records: HistoryRecord[], sinceMs: number): void {
  if (!tracingEnabled()) return;
  const endMs = Date.now();
  for (const r of records) {
    if (!r.traceParent || !r.record) continue;
    const id = r.record.$case === "skip" ? r.record.value.eventId : r.record.value.runId;
    recordSpan("history.write", {
      parent: r.traceParent,
      startMs: sinceMs,
      endMs,
      attributes: { "stepline.record": r.record.$case, "stepline.record_id": id },
    });
  }
}

/** Creates the consumer; nothing connects until `start`. */
export function createHistoryConsumer(o: ConsumerOptions): HistoryConsumer {
  const log = o.log.child({ component: "consumer" });
  const stopping = new AbortController();
  let isJoined = false;
  const consumer = o.kafka.consumer({
    groupId: o.groupId,
    // A slow ClickHouse insert (request timeout 30 s) must not cost the partition.
    sessionTimeout: 45_000,
    heartbeatInterval: 3_000,
    minBytes: o.batchMinBytes,
    maxBytes: o.batchMaxBytes,
    maxBytesPerPartition: o.batchMaxBytes,
    maxWaitTimeInMs: o.batchWaitMs,
  });
  const ev = consumer.events;
  consumer.on(ev.GROUP_JOIN, () => {
    isJoined = true;
  });
  for (const leave of [ev.REBALANCING, ev.STOP, ev.DISCONNECT]) {
    consumer.on(leave, () => {
      isJoined = false;
    });
  }
  consumer.on(ev.CRASH, ({ payload }) => {
    isJoined = false;
    log.error({ err: payload.error, restart: payload.restart }, "consumer crashed");
    if (!payload.restart && !stopping.signal.aborted) o.onFatal?.(payload.error);
  });

  /**
   * Inserts `rows` into `table`. When ClickHouse refuses the data itself (isDataRejection), the
   * rows are halved until the refused ones stand alone; each of those is set aside in the
   * dead-letter table, so one bad row never holds up the rest or its partition. Any other error
   * (ClickHouse unreachable) is thrown for the caller's retry.
   */
  async function insertOrSetAside(table: TableName, rows: Rows[TableName]): Promise<void> {
    try {
      await o.store.insert(table, rows);
    } catch (err) {
      if (!isDataRejection(err)) throw err;
      if (rows.length > 1) {
        const mid = rows.length >> 1;
        await insertOrSetAside(table, rows.slice(0, mid) as Rows[TableName]);
        await insertOrSetAside(table, rows.slice(mid) as Rows[TableName]);
        return;
      }
      const row = rows[0] as Rows[TableName][number];
      const error = String((err as Error).message).slice(0, 4_096);
      const id = "run_id" in row ? row.run_id : row.event_id;
      deadLettersTotal.inc({ table });
      log.error({ table, id, error }, "history row refused by ClickHouse; set aside in dead_letters");
      try {
        await o.store.insertDeadLetter({
          at_ms: Date.now(),
          table_name: table,
          row_json: JSON.stringify(row),
          error,
        });
      } catch (e) {
        if (!isDataRejection(e)) throw e;
        log.error({ table, id, error: String(e) }, "dead-letter row refused too; dropped");
      }
    }
  }

  /** Inserts every non-empty table of `rows`, retrying the failed ones; false if told to stop. */
  async function write(
    rows: Rows,
    heartbeat: () => Promise<void>,
    shouldContinue: () => boolean,
  ): Promise<boolean> {
    const pending = new Set<TableName>((Object.keys(rows) as TableName[]).filter((t) => rows[t].length > 0));
    return retry(
      async () => {
        const tables = [...pending];
        const results = await Promise.allSettled(tables.map((t) => insertOrSetAside(t, rows[t])));
        results.forEach((r, i) => {
          if (r.status === "fulfilled") pending.delete(tables[i] as TableName);
        });
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
      },
      {
        signal: stopping.signal,
        log,
        what: "clickhouse insert",
        backoff: { firstMs: 100, maxMs: o.retryMaxMs },
        shouldContinue,
        beforeAttempt: heartbeat,
      },
    );
  }

  /** The group-commit buffer: records of waiting batches, and how to tell each batch the outcome. */
  let buffer: {
    records: HistoryRecord[];
    events: EventRecord[];
    bytes: number;
    waiters: Array<{ p: EachBatchPayload; settle: (stored: boolean) => void }>;
    timer: NodeJS.Timeout;
  } | null = null;

  function flushSoon(): void {
    const b = buffer;
    if (!b) return;
    clearTimeout(b.timer);
    buffer = null;
    void flush(b.records, b.events, b.waiters);
  }

  async function flush(
    records: HistoryRecord[],
    events: EventRecord[],
    waiters: Array<{ p: EachBatchPayload; settle: (stored: boolean) => void }>,
  ): Promise<void> {
    const { rows, rejected } = rowsOf(records, events);
    for (const r of rejected) {
      if ("eventJson" in r) {
        log.warn({ record: "event", id: r.eventId.slice(0, 600) }, "dropping malformed event record");
        continue;
      }
      log.warn(
        {
          record: r.record?.$case ?? "empty",
          id: r.record?.$case === "skip" ? r.record.value.eventId : r.record?.value.runId,
        },
        "dropping malformed history record",
      );
    }
    // Every waiting batch heartbeats while ClickHouse is retried, so the group keeps its partition.
    const heartbeat = async () => {
      await Promise.all(
        waiters.map((w) => (w.p.isRunning() && !w.p.isStale() ? w.p.heartbeat() : undefined)),
      );
    };
    let stored = false;
    try {
      // Retried while any batch of the flush still belongs to this member.
      stored = await write(rows, heartbeat, () => waiters.some((w) => w.p.isRunning() && !w.p.isStale()));
    } catch (err) {
      log.warn({ err }, "history flush stopped");
    }
    for (const w of waiters) w.settle(stored);
    log.debug({ batches: waiters.length, runs: rows.runs.length, steps: rows.steps.length }, "flush stored");
  }

  async function eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const arrivedMs = Date.now();
    const isEvents = batch.topic === o.eventsTopic;
    const records = isEvents ? [] : decode(batch.messages, HistoryRecord, log);
    const events = isEvents ? decode(batch.messages, EventRecord, log) : [];
    const bytes = batch.messages.reduce((n, m) => n + (m.value?.length ?? 0), 0);
    const stored = await new Promise<boolean>((settle) => {
      buffer ??= { records: [], events: [], bytes: 0, waiters: [], timer: setTimeout(flushSoon, o.flushMs) };
      buffer.records.push(...records);
      buffer.events.push(...events);
      buffer.bytes += bytes;
      buffer.waiters.push({ p, settle });
      if (buffer.bytes >= o.batchMaxBytes) flushSoon();
    });
    // Not resolving leaves the batch uncommitted: it is fetched again by whoever owns the partition.
    if (stored) traceWrites(records, arrivedMs);
    if (!stored || !p.isRunning() || p.isStale()) return;
    p.resolveOffset(batch.lastOffset());
  }

  return {
    async start() {
      try {
        await consumer.connect();
        const topics = o.eventsTopic ? [o.topic, o.eventsTopic] : [o.topic];
        await consumer.subscribe({ topics, fromBeginning: true });
        // autoCommit commits the resolved offsets right after each batch; nothing resolves early.
        await consumer.run({
          autoCommit: true,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: o.partitionsConsumedConcurrently,
          eachBatch,
        });
      } catch (err) {
        // Leave a clean client behind so `start` can simply be called again.
        await consumer.disconnect().catch(() => undefined);
        throw err;
      }
    },
    async stop() {
      stopping.abort();
      flushSoon();
      await consumer.disconnect();
    },
    joined: () => isJoined,
  };
}
