// Run and step lifecycle records to the Kafka `<prefix>history` topic (key = run id), batched.
// Each record is a full snapshot with a version, so duplicates and reordering are harmless; that is
// why a failed send may simply be tried again later.

import type { Logger } from "@stepline/internal/log";
import type { RunRecord, SkipRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { HistoryRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Kafka, Message, Producer } from "kafkajs";
import { Partitioners } from "kafkajs";

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
  /** How long `record` waits for Kafka before it leaves the records to the background retry. */
  timeoutMs: number;
  /** Most records kept for the background retry; the oldest are dropped (and logged) past it. */
  maxBacklog: number;
}

interface Pending {
  messages: Message[];
  resolve(): void;
  reject(err: unknown): void;
}

/** Produces history records; sends issued while one is in flight are merged into the next batch. */
export class HistoryProducer {
  private readonly producer: Producer;
  private queue: Pending[] = [];
  private sending = false;
  private connected = false;
  private backlog: Message[] = [];
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    kafka: Kafka,
    private readonly opts: HistoryOptions,
    private readonly log: Logger,
  ) {
    // The default (murmur2) partitioner, named explicitly: same key, same partition as other clients.
    this.producer = kafka.producer({
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  /** Connects the producer. */
  async start(): Promise<void> {
    await this.producer.connect();
    this.connected = true;
  }

  /** True once connected (readiness). */
  isConnected(): boolean {
    return this.connected;
  }

  /** Sends entries and resolves once Kafka acknowledged them (acks=all); rejects on failure. */
  produce(entries: HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ messages: entries.map(toMessage), resolve, reject });
      if (!this.sending) void this.flush();
    });
  }

  /**
   * Sends entries, waiting at most `timeoutMs`; on failure they are kept and retried in the
   * background (and while that backlog lasts, new entries join it at once). Never rejects: a
   * history outage must not stop runs.
   */
  async record(entries: HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return;
    // While earlier records wait for Kafka, do not make every run wait for the timeout too.
    if (this.backlog.length > 0) {
      this.defer(entries.map(toMessage));
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no ack within ${this.opts.timeoutMs} ms`)),
        this.opts.timeoutMs,
      );
    });
    const sent = this.produce(entries);
    try {
      await Promise.race([sent, deadline]);
    } catch (err) {
      // The send may still succeed later; a second copy from the retry is harmless (versions).
      sent.catch(() => undefined);
      this.log.warn(
        { err: String(err), records: entries.length },
        "history unavailable; will retry in background",
      );
      this.defer(entries.map(toMessage));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Tries once more to send what is left, then disconnects. */
  async stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.backlog.length > 0) await this.retryBacklog();
    if (this.backlog.length > 0)
      this.log.error({ records: this.backlog.length }, "history records lost at shutdown");
    this.connected = false;
    await this.producer.disconnect();
  }

  private async flush(): Promise<void> {
    this.sending = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.queue.length);
      try {
        await this.producer.send({
          topic: this.opts.topic,
          acks: -1,
          messages: batch.flatMap((p) => p.messages),
        });
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.sending = false;
  }

  private defer(messages: Message[]): void {
    this.backlog.push(...messages);
    const excess = this.backlog.length - this.opts.maxBacklog;
    if (excess > 0) {
      this.backlog.splice(0, excess);
      this.log.error({ dropped: excess }, "history backlog full; oldest records dropped");
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.backlog.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryBacklog().finally(() => this.scheduleRetry());
    }, 1_000);
    this.retryTimer.unref();
  }

  private async retryBacklog(): Promise<void> {
    const batch = this.backlog.splice(0, 1_000);
    if (batch.length === 0) return;
    try {
      await new Promise<void>((resolve, reject) => {
        this.queue.push({ messages: batch, resolve, reject });
        if (!this.sending) void this.flush();
      });
      this.log.info({ records: batch.length }, "history backlog sent");
    } catch {
      this.backlog.unshift(...batch);
    }
  }
}

function toMessage(entry: HistoryEntry): Message {
  return {
    key: entry.$case === "skip" ? entry.value.eventId : entry.value.runId,
    // The oneof encoder reads only $case and value.
    value: Buffer.from(
      HistoryRecord.encode({ record: entry, traceParent: entry.traceParent ?? "" }).finish(),
    ),
  };
}
