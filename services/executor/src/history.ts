// Run and step lifecycle records to the Kafka `<prefix>history` topic (key = run id), batched.
// Each record is a full snapshot with a version, so duplicates and reordering are harmless; that is
// why a failed send may simply be tried again later. Stepline's own events go on the same client
// to `<prefix>events` (internal-events.ts): a run's final record and its end events, sent in the same
// turn, share one Kafka request.

import { UnavailableError } from "@stepline/internal/errors";
import type { KeyedRecord, ProducerClient, TopicRecord } from "@stepline/internal/kafka-producer";
import { isRefusedRecords, sendTopicRecords } from "@stepline/internal/kafka-producer";
import type { Logger } from "@stepline/internal/log";
import { backoffMs } from "@stepline/internal/retry";
import type { RunRecord, SkipRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { HistoryRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { historyDroppedTotal } from "./metrics.js";

/** A record as sent: a history record is keyed by run id, so a run's records keep their order. */
type Message = TopicRecord;

export type HistoryEntry = (
  | { $case: "run"; value: RunRecord }
  | { $case: "step"; value: StepRecord }
  | { $case: "skip"; value: SkipRecord }
) & {
  /** The span the record belongs under (history's write joins the run's trace); absent = none. */
  traceParent?: string | undefined;
};

export interface HistoryOptions {
  topic: string;
  /** Where `produceEvents` sends (the events topic); unset, it refuses. */
  eventsTopic?: string;
  /** How long `record` waits for Kafka before it leaves the records to the background retry. */
  timeoutMs: number;
  /**
   * Most bytes kept for the background retry (the oldest records are dropped, and logged, past
   * it), and most bytes waiting to be sent (a send past it is refused at once: Kafka is behind).
   */
  maxBacklogBytes: number;
  /**
   * How long `record` waits for more records before it sends (0 = at once): step records from
   * many runs then share one Kafka request. `produce` never waits, and takes them along.
   */
  lingerMs?: number;
}

/**
 * A record larger than this is sent with its output and error left out (replaced by a note of
 * their size): the history topic takes messages up to 8 MiB (`max.message.bytes`), and one record
 * Kafka refuses must never hold up the others.
 */
export const HISTORY_RECORD_MAX_BYTES = 6 * 1024 * 1024;
/**
 * Most bytes of records per send. Kafka takes a send's records for one partition as one batch,
 * which the topic's `max.message.bytes` bounds (4 MiB for events, 8 MiB for history, with room
 * left for the batch's own bytes); a record larger than this goes alone.
 */
export const HISTORY_SEND_MAX_BYTES = 3 * 1024 * 1024;

interface Pending {
  messages: Message[];
  bytes: number;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Produces history records and Stepline's own events; sends issued while one is in flight are
 * merged into the next batches, whatever their topic.
 */
export class HistoryProducer {
  private queue: Pending[] = [];
  private queueBytes = 0;
  private sending = false;
  /** A flush is due at the end of this turn. */
  private flushSoon = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  private connected = false;
  private backlog: Message[] = [];
  private backlogBytes = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Background retries in a row that failed (their backoff). */
  private retryFailures = 0;

  /** `producer`: an idempotent client (kafka-producer.ts createProducer); this class closes it. */
  constructor(
    private readonly producer: ProducerClient,
    private readonly opts: HistoryOptions,
    private readonly log: Logger,
  ) {}

  /** Connects the producer (a metadata read); until then sends fail and records wait for the retry. */
  async start(): Promise<void> {
    await this.producer.metadata({ topics: [], forceUpdate: true });
    this.connected = true;
  }

  /** True once connected (readiness). */
  isConnected(): boolean {
    return this.connected;
  }

  /**
   * Sends entries and resolves once Kafka acknowledged them (acks=all); rejects when Kafka cannot
   * be reached, so the caller tries again later. Records Kafka refuses for what they are are set
   * aside (see `isolate`) instead: no later attempt could send them.
   */
  async produce(entries: HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.produceStrict(toMessages(entries, this.opts.topic, this.log));
  }

  /**
   * Sends encoded EventRecords (keyed by account, as event-api keys them) to the events topic, as
   * `produce` sends history records: resolves once Kafka acknowledged them.
   */
  async produceEvents(records: KeyedRecord[]): Promise<void> {
    const topic = this.opts.eventsTopic;
    if (!topic) throw new Error("the producer has no events topic");
    await this.produceStrict(records.map((r) => ({ topic, key: r.key, value: r.value })));
  }

  private async produceStrict(messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    try {
      await this.send(messages);
    } catch (err) {
      if (!isRefusedRecords(err)) throw err;
      await this.isolate(messages);
    }
  }

  /**
   * Sends entries, waiting at most `timeoutMs`; on failure they are kept and retried in the
   * background (and while that backlog lasts, new entries join it at once). Never rejects: a
   * history outage must not stop runs.
   */
  async record(entries: HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const messages = toMessages(entries, this.opts.topic, this.log);
    if (messages.length === 0) return;
    // While earlier records wait for Kafka, do not make every run wait for the timeout too.
    if (this.backlog.length > 0) {
      this.defer(messages);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no ack within ${this.opts.timeoutMs} ms`)),
        this.opts.timeoutMs,
      );
    });
    const sent = this.send(messages, this.opts.lingerMs ?? 0);
    try {
      await Promise.race([sent, deadline]);
    } catch (err) {
      // The send may still succeed later; a second copy from the retry is harmless (versions).
      sent.catch(() => undefined);
      if (isRefusedRecords(err)) {
        // Kafka refuses these records for what they are: retrying them would only block the rest.
        await this.isolate(messages);
      } else {
        this.log.warn(
          { err: String(err), records: entries.length },
          "history unavailable; will retry in background",
        );
        this.defer(messages);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Tries once more to send what is left, then disconnects. */
  async stop(): Promise<void> {
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      await this.flush();
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.backlog.length > 0) await this.retryBacklog();
    if (this.backlog.length > 0)
      this.log.error({ records: this.backlog.length }, "history records lost at shutdown");
    this.connected = false;
    await this.producer.close();
  }

  private send(messages: Message[], lingerMs = 0): Promise<void> {
    if (!this.connected) return Promise.reject(new UnavailableError("the history producer is not started"));
    const bytes = bytesOf(messages);
    if (this.queue.length > 0 && this.queueBytes + bytes > this.opts.maxBacklogBytes) {
      return Promise.reject(new UnavailableError("history records are waiting for Kafka; try again later"));
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ messages, bytes, resolve, reject });
      this.queueBytes += bytes;
      if (this.sending || this.flushSoon) return; // the send in flight or about to go takes these
      if (lingerMs > 0) {
        this.lingerTimer ??= setTimeout(() => void this.flush(), lingerMs);
        return;
      }
      // After this turn: what else it sends goes in the same request (a run's final record and
      // its end events, which finalizeRun sends side by side).
      this.flushSoon = true;
      queueMicrotask(() => {
        this.flushSoon = false;
        // A linger's end may have started one meanwhile: that loop takes these too.
        if (!this.sending) void this.flush();
      });
    });
  }

  /** Sends what is queued, in sends of at most HISTORY_SEND_MAX_BYTES (whole callers each). */
  private async flush(): Promise<void> {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.sending = true;
    while (this.queue.length > 0) {
      let bytes = 0;
      let n = 0;
      for (const p of this.queue) {
        if (n > 0 && bytes + p.bytes > HISTORY_SEND_MAX_BYTES) break;
        bytes += p.bytes;
        n++;
      }
      const batch = this.queue.splice(0, n);
      this.queueBytes -= bytes;
      try {
        await sendTopicRecords(
          this.producer,
          batch.flatMap((p) => p.messages),
        );
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.sending = false;
  }

  private defer(messages: Message[]): void {
    this.backlog.push(...messages);
    this.backlogBytes += bytesOf(messages);
    // The oldest go, in one splice (a full backlog may hold many thousands of records).
    let dropped = 0;
    let freed = 0;
    while (this.backlogBytes - freed > this.opts.maxBacklogBytes && dropped < this.backlog.length) {
      freed += sizeOf(this.backlog[dropped] as Message);
      dropped++;
    }
    this.backlog.splice(0, dropped);
    this.backlogBytes -= freed;
    if (dropped > 0) {
      historyDroppedTotal.inc({ reason: "backlog_full" }, dropped);
      this.log.error({ dropped }, "history backlog full; oldest records dropped");
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.backlog.length === 0) return;
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        void this.retryBacklog().finally(() => this.scheduleRetry());
      },
      backoffMs(this.retryFailures + 1, { firstMs: 1_000, maxMs: 30_000 }),
    );
    this.retryTimer.unref();
  }

  private async retryBacklog(): Promise<void> {
    let n = 0;
    let bytes = 0;
    for (const m of this.backlog) {
      if (n > 0 && bytes + sizeOf(m) > HISTORY_SEND_MAX_BYTES) break;
      bytes += sizeOf(m);
      n++;
    }
    const batch = this.backlog.splice(0, n);
    this.backlogBytes -= bytes;
    if (batch.length === 0) return;
    try {
      await this.send(batch);
      this.retryFailures = 0;
      this.log.info({ records: batch.length }, "history backlog sent");
    } catch (err) {
      this.retryFailures++;
      if (isRefusedRecords(err)) {
        await this.isolate(batch);
        return;
      }
      this.backlog.unshift(...batch);
      this.backlogBytes += bytes;
    }
  }

  /**
   * Kafka refused a send for its content: sends its records one by one, so only the ones it
   * refuses are set aside (logged with their key, counted); the others go, or wait for the retry.
   */
  private async isolate(messages: Message[]): Promise<void> {
    for (const m of messages) {
      try {
        await this.send([m]);
      } catch (err) {
        if (!isRefusedRecords(err)) {
          this.defer([m]);
          continue;
        }
        historyDroppedTotal.inc({ reason: "refused" });
        this.log.error(
          { err: String(err), topic: m.topic, key: m.key, bytes: sizeOf(m) },
          "record refused by Kafka; set aside (dropped)",
        );
      }
    }
  }
}

function sizeOf(m: Message): number {
  return m.value.length + m.key.length;
}

function bytesOf(messages: Message[]): number {
  return messages.reduce((n, m) => n + sizeOf(m), 0);
}

function encode(entry: HistoryEntry): Buffer {
  // The oneof encoder reads only $case and value.
  return Buffer.from(HistoryRecord.encode({ record: entry, traceParent: entry.traceParent ?? "" }).finish());
}

/** A note history keeps in place of an output or error too large for it. */
function omitted(what: string, json: string): string {
  if (json === "") return "";
  return JSON.stringify({
    stepline_omitted: `this ${what} (${Buffer.byteLength(json)} bytes) is larger than history keeps; the run's state had it`,
  });
}

/**
 * The entries as Kafka messages. One that cannot be encoded (a field out of its proto type: a
 * bug) is logged, counted and left out: history is thinned, the run and the process go on.
 */
function toMessages(entries: HistoryEntry[], topic: string, log: Logger): Message[] {
  const out: Message[] = [];
  for (const entry of entries) {
    try {
      out.push({ topic, ...toRecord(entry, log) });
    } catch (err) {
      log.error({ err, record: entry.$case }, "history record cannot be encoded; left out");
      historyDroppedTotal.inc({ reason: "unencodable" });
    }
  }
  return out;
}

function toRecord(entry: HistoryEntry, log: Logger): KeyedRecord {
  const key = entry.$case === "skip" ? entry.value.eventId : entry.value.runId;
  let value = encode(entry);
  if (value.length > HISTORY_RECORD_MAX_BYTES && entry.$case !== "skip") {
    log.warn({ runId: key, bytes: value.length }, "history record too large; output and error left out");
    historyDroppedTotal.inc({ reason: "too_large_payload" });
    const v = entry.value;
    const slim = {
      ...v,
      outputJson: omitted("output", v.outputJson),
      errorJson: omitted("error", v.errorJson),
    };
    value = encode({ ...entry, value: slim } as HistoryEntry);
  }
  return { key, value };
}
