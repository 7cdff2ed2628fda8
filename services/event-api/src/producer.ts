// The Kafka producer of the `events` topic. A request's events always travel in one
// `producer.send` (acks = all, idempotent producer, one request in flight), and the request is
// answered only after that send resolved. Sends are group-committed: while one send is in flight,
// the requests that arrive wait and then go together in the next send, so throughput does not
// collapse to one round trip per HTTP request (idle latency is unchanged: no waiting for a batch).

import { TooLargeError, UnavailableError } from "@stepline/internal/errors";
import type { KeyedRecord, ProducerClient } from "@stepline/internal/kafka-producer";
import { isTooLarge, sendRecords } from "@stepline/internal/kafka-producer";
import type { Logger } from "@stepline/internal/log";
import { backoffMs } from "@stepline/internal/retry";

/** One event record: keyed by account, so an account's events keep their order. */
export type Message = KeyedRecord;

export interface ProducerOptions {
  topic: string;
  /** How long a request waits for Kafka's acknowledgement before it is answered 503. */
  timeoutMs: number;
  log: Logger;
  /** Requests are merged into one send up to this many bytes (a bigger request goes alone). */
  maxBatchBytes?: number;
  /** Requests allowed to wait for a send before new ones are refused with 503. */
  maxQueued?: number;
  /** Bytes of events allowed to wait for a send before new requests are refused with 503. */
  maxQueuedBytes?: number;
  /** First delay between connection attempts while Kafka is unreachable (backing off to 10×). */
  reconnectMs?: number;
}

/** The part of the producer the HTTP layer uses. */
export interface EventSink {
  /** Produces the messages; resolves once Kafka acknowledged them (UnavailableError/TooLargeError otherwise). */
  produce(messages: Message[]): Promise<void>;
}

interface Pending {
  messages: Message[];
  bytes: number;
  settled: boolean;
  resolve(): void;
  reject(err: Error): void;
}

/** An idempotent Kafka producer with group commit, connection retries and readiness. */
export class EventProducer implements EventSink {
  private readonly queue: Pending[] = [];
  private inFlight: Promise<void> | null = null;
  private isConnected = false;
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Failed connection attempts in a row (the reconnect backoff). */
  private connectFailures = 0;
  private readonly maxBatchBytes: number;
  private readonly reconnectMs: number;
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;
  /** Bytes of the requests in `queue` (timed-out ones until they are dropped from it). */
  private queuedBytes = 0;
  private connectedWaiters: Array<() => void> = [];

  /** `producer`: an idempotent client (kafka-producer.ts createProducer); this class closes it. */
  constructor(
    private readonly producer: ProducerClient,
    private readonly opts: ProducerOptions,
  ) {
    this.maxBatchBytes = opts.maxBatchBytes ?? 512 * 1024;
    this.reconnectMs = opts.reconnectMs ?? 1_000;
    this.maxQueued = opts.maxQueued ?? 10_000;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 64 * 1024 * 1024;
    this.producer.on("client:broker:disconnect", () => {
      if (this.stopping || !this.isConnected) return;
      this.isConnected = false;
      this.opts.log.warn({ topic: this.opts.topic }, "kafka connection lost; reconnecting");
      this.scheduleConnect();
    });
  }

  /** Starts connecting in the background (retrying until it works or stop() is called). */
  start(): void {
    void this.connect();
  }

  /** True once connected (readiness). */
  connected(): boolean {
    return this.isConnected;
  }

  /** Bytes of events waiting for a send (not counting the send in flight). */
  waitingBytes(): number {
    return this.queuedBytes;
  }

  /** Resolves when the producer is connected (tests and startup logs). */
  whenConnected(): Promise<void> {
    if (this.isConnected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  private async connect(): Promise<void> {
    this.reconnectTimer = null;
    if (this.stopping) return;
    try {
      // A metadata read connects to a broker; the topic need not exist yet.
      await this.producer.metadata({ topics: [], forceUpdate: true });
      this.isConnected = true;
      this.connectFailures = 0;
      this.opts.log.info({ topic: this.opts.topic }, "kafka producer connected");
      for (const w of this.connectedWaiters.splice(0)) w();
    } catch (err) {
      this.connectFailures++;
      this.opts.log.warn({ err: (err as Error).message }, "kafka producer cannot connect; retrying");
      this.scheduleConnect();
    }
  }

  private scheduleConnect(): void {
    if (this.reconnectTimer || this.stopping) return;
    const delay = backoffMs(Math.max(this.connectFailures, 1), {
      firstMs: this.reconnectMs,
      maxMs: 10 * this.reconnectMs,
    });
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  produce(messages: Message[]): Promise<void> {
    if (this.stopping) return Promise.reject(new UnavailableError("event-api is shutting down; retry"));
    if (!this.isConnected) {
      return Promise.reject(new UnavailableError("the event stream (Kafka) is unavailable; retry later"));
    }
    // Backpressure: when Kafka is slow, refuse at once rather than hold ever more requests (or
    // bytes: a few thousand requests of 3 MiB would exhaust memory long before the count limit).
    const bytes = messages.reduce((n, m) => n + (m.value?.length ?? 0) + 64, 0);
    if (this.queue.length >= this.maxQueued || this.queuedBytes + bytes > this.maxQueuedBytes) {
      return Promise.reject(
        new UnavailableError("too many events are waiting for the event stream; retry shortly"),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (p.settled) return;
        p.settled = true;
        reject(
          new UnavailableError(
            `Kafka did not acknowledge the events within ${this.opts.timeoutMs} ms; retry (events sent with an id are deduplicated)`,
          ),
        );
      }, this.opts.timeoutMs);
      const p: Pending = {
        messages,
        bytes,
        settled: false,
        resolve: () => {
          clearTimeout(timer);
          if (!p.settled) resolve();
          p.settled = true;
        },
        reject: (err) => {
          clearTimeout(timer);
          if (!p.settled) reject(err);
          p.settled = true;
        },
      };
      this.queue.push(p);
      this.queuedBytes += bytes;
      this.pump();
    });
  }

  // Starts the next send when none is in flight: every waiting request (not yet timed out) up to
  // maxBatchBytes, always at least one.
  private pump(): void {
    if (this.inFlight) return;
    const batch: Pending[] = [];
    let bytes = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0] as Pending;
      if (next.settled) {
        this.queue.shift();
        this.queuedBytes -= next.bytes;
        continue;
      }
      if (batch.length > 0 && bytes + next.bytes > this.maxBatchBytes) break;
      batch.push(next);
      bytes += next.bytes;
      this.queue.shift();
      this.queuedBytes -= next.bytes;
    }
    if (batch.length === 0) return;
    this.inFlight = this.send(batch).finally(() => {
      this.inFlight = null;
      this.pump();
    });
  }

  private async send(batch: Pending[]): Promise<void> {
    try {
      await sendRecords(
        this.producer,
        this.opts.topic,
        batch.flatMap((p) => p.messages),
      );
      for (const p of batch) p.resolve();
    } catch (err) {
      const mapped = mapKafkaError(err);
      this.opts.log.warn({ err: (err as Error).message, requests: batch.length }, "produce to kafka failed");
      for (const p of batch) p.reject(mapped);
    }
  }

  /** Stops taking requests, waits for the send in flight, and disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    await this.inFlight;
    for (const p of this.queue.splice(0)) p.reject(new UnavailableError("event-api is shutting down; retry"));
    this.queuedBytes = 0;
    await this.producer.close().catch(() => undefined);
  }
}

/** A Kafka failure as the closed error set: a batch Kafka finds too large is 413, anything else 503. */
export function mapKafkaError(err: unknown): Error {
  if (isTooLarge(err)) {
    return new TooLargeError(
      "Kafka rejected the events as too large together; send fewer or smaller events per request",
    );
  }
  return new UnavailableError("the event stream (Kafka) is unavailable; retry later");
}
