// Skips made visible: an event that matched a function but started no run of it (rate limit,
// idempotency) becomes a SkipRecord on the `history` topic, which history stores and the REST API
// lists (`GET /v1/events/:id/skips`). Produced before the event's offset is committed, so a skip
// is never lost; a redelivery produces it again, which history collapses.

import type { ProducerClient } from "@stepline/internal/kafka-producer";
import { sendRecords } from "@stepline/internal/kafka-producer";
import { metrics } from "@stepline/internal/lifecycle";
import type { SkipRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { HistoryRecord, SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import { Counter } from "prom-client";

/** Records skips durably (rejects when they were not all acknowledged). */
export type SkipSink = (skips: SkipRecord[]) => Promise<void>;

const skippedCounter = new Counter({
  name: "stepline_runner_events_skipped_total",
  help: "Event/function pairs that started no run, by reason (rate_limited, idempotent).",
  labelNames: ["reason"],
  registers: [metrics],
});

const REASON_LABEL: Partial<Record<SkipReason, string>> = {
  [SkipReason.SKIP_REASON_RATE_LIMITED]: "rate_limited",
  [SkipReason.SKIP_REASON_IDEMPOTENT]: "idempotent",
  [SkipReason.SKIP_REASON_SINGLETON]: "singleton",
  [SkipReason.SKIP_REASON_REFUSED]: "refused",
};

/** Counts skips by reason (once each is recorded). */
export function countSkips(skips: SkipRecord[]): void {
  for (const s of skips) skippedCounter.inc({ reason: REASON_LABEL[s.reason] ?? "unknown" });
}

/** A SkipSink over a Kafka producer to the history topic (keyed by event id). */
export class KafkaSkipSink {
  /** `producer`: an idempotent client (kafka-producer.ts createProducer), which connects on first use. */
  constructor(
    private readonly producer: ProducerClient,
    private readonly topic: string,
  ) {}

  readonly send: SkipSink = async (skips) => {
    if (skips.length === 0) return;
    await sendRecords(
      this.producer,
      this.topic,
      skips.map((s) => ({
        key: s.eventId,
        value: Buffer.from(
          HistoryRecord.encode({ record: { $case: "skip", value: s }, traceParent: "" }).finish(),
        ),
      })),
    );
  };

  async stop(): Promise<void> {
    await this.producer.close();
  }
}
