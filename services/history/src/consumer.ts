// The `<prefix>history` consumer: each Kafka batch (one partition's fetch) becomes at most one
// ClickHouse insert per table. Offsets are resolved only after ClickHouse accepted every insert of
// the batch, and committed by kafkajs right after; while ClickHouse is down the batch is retried
// with backoff (heartbeating, so the group keeps the partition) and nothing is committed.
import type { createKafka } from "@stepline/internal/kafka";
import type { Logger } from "@stepline/internal/log";
import { HistoryRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { retry } from "./retry.js";
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
  groupId: string;
  batchWaitMs: number;
  batchMinBytes: number;
  batchMaxBytes: number;
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
function decode(messages: KafkaMessage[], log: Logger): HistoryRecord[] {
  const out: HistoryRecord[] = [];
  for (const m of messages) {
    if (!m.value) continue;
    try {
      out.push(HistoryRecord.decode(m.value));
    } catch (err) {
      log.warn({ err, offset: m.offset }, "dropping undecodable history record");
    }
  }
  return out;
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

  /** Inserts every non-empty table of `rows`, retrying the failed ones; false if told to stop. */
  async function write(rows: Rows, p: EachBatchPayload): Promise<boolean> {
    const pending = new Set<TableName>((Object.keys(rows) as TableName[]).filter((t) => rows[t].length > 0));
    return retry(
      async () => {
        const tables = [...pending];
        const results = await Promise.allSettled(tables.map((t) => o.store.insert(t, rows[t])));
        results.forEach((r, i) => {
          if (r.status === "fulfilled") pending.delete(tables[i] as TableName);
        });
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
      },
      {
        signal: stopping.signal,
        log,
        what: `clickhouse insert (${p.batch.topic}[${p.batch.partition}] @${p.batch.firstOffset()})`,
        maxDelayMs: o.retryMaxMs,
        shouldContinue: () => p.isRunning() && !p.isStale(),
        beforeAttempt: () => p.heartbeat(),
      },
    );
  }

  async function eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const { rows, rejected } = rowsOf(decode(batch.messages, log));
    for (const r of rejected)
      log.warn(
        {
          record: r.record?.$case ?? "empty",
          id: r.record?.$case === "skip" ? r.record.value.eventId : r.record?.value.runId,
        },
        "dropping malformed history record",
      );
    // Not resolving leaves the batch uncommitted: it is fetched again by whoever owns the partition.
    if (!(await write(rows, p))) return;
    p.resolveOffset(batch.lastOffset());
    log.debug(
      {
        partition: batch.partition,
        messages: batch.messages.length,
        runs: rows.runs.length,
        steps: rows.steps.length,
      },
      "batch stored",
    );
  }

  return {
    async start() {
      try {
        await consumer.connect();
        await consumer.subscribe({ topics: [o.topic], fromBeginning: true });
        // autoCommit commits the resolved offsets right after each batch; nothing resolves early.
        await consumer.run({ autoCommit: true, eachBatchAutoResolve: false, eachBatch });
      } catch (err) {
        // Leave a clean client behind so `start` can simply be called again.
        await consumer.disconnect().catch(() => undefined);
        throw err;
      }
    },
    async stop() {
      stopping.abort();
      await consumer.disconnect();
    },
    joined: () => isJoined,
  };
}
