// The Kafka producer client: @platformatic/kafka. It encodes and sends a produce request for
// about a third of kafkajs's CPU per message (loadtest/README.md, "Kafka client"), and it is
// maintained; kafkajs (last release 2023) still serves the consumers and admin (kafka.ts).
import type { Partitioner } from "@platformatic/kafka";
import { murmur2, Producer } from "@platformatic/kafka";
import { backoffMs } from "./retry.js";

/** A record for the producer: string key (the partition follows it), encoded value. */
export interface KeyedRecord {
  key: string;
  value: Buffer;
}

/** A keyed record and the topic it goes to (one send may go to several topics). */
export interface TopicRecord extends KeyedRecord {
  topic: string;
}

export interface ProducerClientOptions {
  /** Comma-separated host:port list. */
  brokers: string;
  clientId: string;
  /** How long one request to Kafka (a produce, a metadata read) may take. */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Tries after the first of one operation, backing off from `retryFirstMs` to `retryMaxMs`. */
  retries?: number;
  retryFirstMs?: number;
  retryMaxMs?: number;
}

export type ProducerClient = Producer<string, Buffer, string, string>;

/**
 * An idempotent producer (acks = all, one request in flight per broker) whose keyed records go to
 * the partition Java's and kafkajs's default partitioners pick for the key.
 */
export function createProducer(o: ProducerClientOptions): ProducerClient {
  return new Producer<string, Buffer, string, string>({
    clientId: o.clientId,
    bootstrapBrokers: o.brokers.split(",").map((b) => b.trim()),
    idempotent: true,
    acks: -1,
    autocreateTopics: false,
    timeout: o.requestTimeoutMs ?? 30_000,
    requestTimeout: o.requestTimeoutMs ?? 30_000,
    connectTimeout: o.connectTimeoutMs ?? 3_000,
    // An idempotent producer retries without end unless told otherwise: a send must end.
    retries: Math.max(2, o.retries ?? 5),
    retryDelay: (_client, _op, attempt) =>
      backoffMs(attempt, { firstMs: o.retryFirstMs ?? 100, maxMs: o.retryMaxMs ?? 2_000 }),
    serializers: { key: keyBytes, value: (v) => v, headerKey: keyBytes, headerValue: keyBytes },
    partitioner: javaPartitioner(),
  });
}

/** Producers whose last send failed: the next send first takes a fresh producer id. */
const renewBeforeNextSend = new WeakSet<ProducerClient>();

/** Sends records to `topic` and resolves once Kafka acknowledged them all (see `send`). */
export function sendRecords(producer: ProducerClient, topic: string, records: KeyedRecord[]): Promise<void> {
  return send(
    producer,
    records.map((r) => ({ topic, key: r.key, value: r.value })),
  );
}

/** Sends records, each to its own topic, in one request per broker (see `send`). */
export function sendTopicRecords(producer: ProducerClient, records: TopicRecord[]): Promise<void> {
  return send(
    producer,
    records.map((r) => ({ topic: r.topic, key: r.key, value: r.value })),
  );
}

/**
 * Sends `messages` (fresh objects: the client writes their partition into them) and resolves once
 * Kafka acknowledged them all. After a send that failed, the next one first takes a fresh
 * producer id: a failed send may still have been written (its answer lost and the retries spent),
 * and the client, which counts sequence numbers only on success, would number the next batch as
 * that one. The broker would then take a batch of the same size for a duplicate and drop it while
 * acknowledging it, or refuse every later batch as out of order.
 */
async function send(producer: ProducerClient, messages: TopicRecord[]): Promise<void> {
  if (renewBeforeNextSend.has(producer)) {
    await producer.initIdempotentProducer({});
    renewBeforeNextSend.delete(producer);
  }
  try {
    await producer.send({ messages });
  } catch (err) {
    renewBeforeNextSend.add(producer);
    throw err;
  }
}

const keyBytes = (s: string | undefined): Buffer | undefined =>
  s === undefined ? undefined : Buffer.from(s);

/** Most keys whose hash the partitioner keeps (it starts over past it). */
const MAX_CACHED_KEYS = 10_000;

/**
 * Java's default partitioner for keyed records: murmur2 of the key, made positive, modulo the
 * partition count (the client takes the modulo). Each key's hash is remembered: the key (an
 * account, a run) repeats record after record, and murmur2 here computes with BigInts.
 */
export function javaPartitioner(): Partitioner<string, Buffer, string, string> {
  const byKey = new Map<string, number>();
  return (message) => {
    const key = message.key ?? "";
    let hash = byKey.get(key);
    if (hash === undefined) {
      hash = murmur2(Buffer.from(key)) & 0x7fffffff;
      if (byKey.size >= MAX_CACHED_KEYS) byKey.clear();
      byKey.set(key, hash);
    }
    return hash;
  };
}

/** The broker's error codes for records it refuses for what they are. */
const TOO_LARGE = ["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"];
const REFUSED = [...TOO_LARGE, "CORRUPT_MESSAGE", "INVALID_RECORD", "INVALID_TIMESTAMP"];

/** The client's errors nest the broker's (per request, per partition); finds one by its code. */
function hasBrokerError(err: unknown, codes: string[]): boolean {
  const e = err as { findBy?: (property: string, value: unknown) => unknown } | null;
  if (typeof e?.findBy !== "function") return false;
  return codes.some((code) => e.findBy?.("apiId", code) != null);
}

/** True when a produce failed because Kafka found the records too large. */
export function isTooLarge(err: unknown): boolean {
  return hasBrokerError(err, TOO_LARGE);
}

/** True when Kafka refused the records themselves (too large, corrupt): no retry can send them. */
export function isRefusedRecords(err: unknown): boolean {
  return hasBrokerError(err, REFUSED);
}
