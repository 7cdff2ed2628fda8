// Wake-ups between replicas: when an op on this replica moves a shard's earliest due time
// earlier and another replica owns that shard, it publishes "<shard>:<dueMs>" on one channel;
// every replica listens and passes the news to its scheduler. Losing a message only delays
// work until the owner's safety sweep.
import type { Logger } from "@stepline/internal/log";
import type { Redis } from "ioredis";

export class WakeBus {
  private readonly sub: Redis;

  constructor(
    private readonly redis: Redis,
    private readonly channel: string,
    private readonly log: Logger,
  ) {
    this.sub = redis.duplicate();
    this.sub.on("error", (err: Error) => log.warn({ err: err.message }, "wake subscriber error"));
  }

  /** Subscribes; `onWake` gets each shard and due time published by other replicas. */
  async start(onWake: (shard: number, dueMs: number) => void): Promise<void> {
    this.sub.on("message", (_channel: string, message: string) => {
      const [shard, due] = message.split(":").map(Number);
      if (Number.isSafeInteger(shard) && Number.isSafeInteger(due)) onWake(shard as number, due as number);
    });
    await this.sub.subscribe(this.channel);
  }

  /** Tells the shard's owner (wherever it runs) that work is due at `dueMs`. */
  publish(shard: number, dueMs: number): void {
    this.redis.publish(this.channel, `${shard}:${dueMs}`).catch((err: unknown) => {
      this.log.warn({ err, shard }, "wake publish failed");
    });
  }

  async stop(): Promise<void> {
    await this.sub.quit().catch(() => undefined);
  }
}
