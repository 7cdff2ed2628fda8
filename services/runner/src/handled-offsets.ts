// The offsets of handled events, committed on an interval and at stop rather than after every
// batch (a Kafka request each). Only events whose runs exist are marked handled (consumer.ts), so a
// crash between commits redelivers events that map to the runs they already have.
import type { Logger } from "@stepline/internal/log";
import type { Consumer } from "kafkajs";

export class HandledOffsets {
  /** Per partition, the offset after the last handled event, not committed yet. */
  private readonly pending = new Map<number, string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly topic: string,
    private readonly log: Logger,
  ) {}

  /** Marks `offset` of `partition` handled: the next commit moves past it. */
  mark(partition: number, offset: string): void {
    this.pending.set(partition, (BigInt(offset) + 1n).toString());
  }

  /** After a rebalance: the offsets of partitions that moved away are their new owner's to commit. */
  keepOnly(partitions: readonly number[]): void {
    const mine = new Set(partitions);
    for (const partition of this.pending.keys()) if (!mine.has(partition)) this.pending.delete(partition);
  }

  /** Commits through `consumer` every `intervalMs`, until `stopTimer`; forgets older offsets. */
  startTimer(consumer: Consumer, intervalMs: number): void {
    this.stopTimer();
    this.pending.clear(); // a fresh consumer resumes from the committed offsets
    this.timer = setInterval(() => void this.commit(consumer), intervalMs);
    this.timer.unref();
  }

  stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Commits what was handled since the last commit; a failure leaves it for the next one. */
  async commit(consumer: Consumer): Promise<void> {
    if (this.pending.size === 0) return;
    const offsets = [...this.pending];
    try {
      await consumer.commitOffsets(
        offsets.map(([partition, offset]) => ({ topic: this.topic, partition, offset })),
      );
      for (const [partition, offset] of offsets) {
        if (this.pending.get(partition) === offset) this.pending.delete(partition);
      }
    } catch (err) {
      // A rebalance in progress, or Kafka away: the next round (or the new owner) commits.
      this.log.debug({ err: String(err) }, "cannot commit offsets yet");
    }
  }
}
