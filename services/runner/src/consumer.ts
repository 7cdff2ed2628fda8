// The `events` consumer: for each Kafka batch, match the events to their environment's functions,
// give each (event, function) pair its run id, ask the executor to create the runs, and only then
// resolve the offsets. A failure retries the same messages with backoff; nothing is committed
// before its runs exist. Only an event the executor refuses as invalid is set aside (setAside).

import { ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import { type RetryOptions, retry } from "@stepline/internal/retry";
import type { Pause, PauseResume, RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { SkipRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Redis } from "ioredis";
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from "kafkajs";
import { Admitter } from "./admission.js";
import { BatchIndexes } from "./batch-indexes.js";
import type { Buffers } from "./buffers.js";
import { buffers } from "./buffers.js";
import { HandledOffsets } from "./handled-offsets.js";
import type { FunctionIndex, MatchableEvent } from "./match.js";
import { buildIndex, INVOKED, invokedFunction, matchEvent } from "./match.js";
import { eventsCounter, retriesCounter, runsCounter, waitsCounter } from "./metrics.js";
import type { StoredFunction } from "./model.js";
import type { PauseIndex, WaitCandidate } from "./pauses.js";
import { matchPauses, pauseQueries, unknownInvokeTarget } from "./pauses.js";
import type { Registry } from "./registry.js";
import { runSpan, runSpecOf } from "./runs.js";
import type { SkipSink } from "./skips.js";
import { countSkips } from "./skips.js";

/**
 * Most bytes of events JSON one ScheduleRuns call carries: well under the 16 MiB gRPC message
 * cap, which a chunk of runs of large events (up to 512 KiB each, fanned out) would otherwise
 * exceed, failing the call on every retry and blocking the partition for good.
 */
export const SCHEDULE_MAX_BYTES = 4 * 1024 * 1024;

/** Creates runs; must be idempotent per run id (ExecutorService.ScheduleRuns is). */
export type ScheduleRuns = (runs: RunSpec[]) => Promise<void>;

export interface ConsumerOptions {
  kafka: Kafka;
  topic: string;
  groupId: string;
  redis: Redis;
  registry: Registry;
  schedule: ScheduleRuns;
  /** Where events that start no run (rate limit, idempotency) are recorded. */
  skips: SkipSink;
  /** Debounce and batching: events of such functions are buffered instead of starting runs. */
  buffers: Pick<Buffers, "add">;
  /** The executor's waits: each chunk's events resume the waits they match. */
  pauses: PauseIndex;
  log: Logger;
  /** Messages handled per step of a batch, and runs per ScheduleRuns call. */
  chunkSize: number;
  retryMinMs: number;
  retryMaxMs: number;
  partitionConcurrency: number;
  /** The group's session timeout: how soon a crashed consumer's partitions move to another. */
  sessionTimeoutMs: number;
  /** How often the offsets of handled events are committed (handled-offsets.ts), and at stop. */
  commitIntervalMs?: number;
}

const DEFAULT_COMMIT_INTERVAL_MS = 1_000;

interface Item {
  offset: string;
  record: EventRecord | null;
  event: MatchableEvent | null;
}

/** Consumes `<prefix>events` in group `<prefix>stepline-runner` until stopped. */
export class EventConsumer {
  private consumer: Consumer | null = null;
  private running = false;
  private joined = false;
  /** Aborted by stop: ends a retry's wait at once. */
  private stopping = new AbortController();
  private readonly log: Logger;
  private readonly admitter: Admitter;
  /** The registry hands back the same list while an environment is unchanged: so is its index. */
  private readonly indexByList = new WeakMap<StoredFunction[], FunctionIndex>();
  private readonly handled: HandledOffsets;
  private readonly batches = new Set<Promise<void>>();

  constructor(private readonly opts: ConsumerOptions) {
    this.log = opts.log.child({ component: "consumer" });
    this.handled = new HandledOffsets(opts.topic, this.log);
    this.admitter = new Admitter(opts.redis);
  }

  /** True once the consumer has joined its group (and until it stops or crashes). */
  isJoined(): boolean {
    return this.joined;
  }

  /** Connects, subscribes and consumes in the background, retrying until it succeeds or stops. */
  start(): void {
    this.running = true;
    this.stopping = new AbortController();
    void this.connectLoop();
  }

  /** Stops consuming, commits the offsets of what was handled, and leaves the group. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping.abort();
    this.handled.stopTimer();
    const consumer = this.consumer;
    this.consumer = null;
    this.joined = false;
    if (!consumer) return;
    // The batches in flight end first (without resolving what they did not finish); then what
    // was handled is committed while the consumer is still in its group.
    await Promise.allSettled(this.batches);
    await this.handled.commit(consumer);
    await consumer.disconnect();
  }

  private async connectLoop(): Promise<void> {
    await retry(() => this.connectOnce(), {
      log: this.log,
      what: "start the consumer",
      backoff: { firstMs: this.opts.retryMinMs, maxMs: this.opts.retryMaxMs },
      signal: this.stopping.signal,
      shouldContinue: () => this.running,
    });
  }

  /** Connects a fresh consumer and starts consuming; on failure it leaves nothing behind. */
  private async connectOnce(): Promise<void> {
    if (!this.running) return;
    // A short fetch wait keeps shutdown quick: disconnecting waits for the fetch in flight.
    const consumer = this.opts.kafka.consumer({
      groupId: this.opts.groupId,
      maxWaitTimeInMs: 1_000,
      sessionTimeout: this.opts.sessionTimeoutMs,
      // Several heartbeats per session, so one late heartbeat does not evict a live consumer.
      heartbeatInterval: Math.min(3_000, Math.floor(this.opts.sessionTimeoutMs / 3)),
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joined = true;
      this.handled.keepOnly(e.payload.memberAssignment[this.opts.topic] ?? []);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.joined = false;
      if (e.payload.restart || !this.running || this.consumer !== consumer) return;
      // kafkajs gave up on this consumer: start a fresh one (offsets resume from the last commit).
      this.log.error({ err: e.payload.error }, "consumer crashed; reconnecting");
      this.consumer = null;
      void consumer.disconnect().finally(() => {
        if (this.running) void this.connectLoop();
      });
    });
    try {
      this.consumer = consumer;
      await consumer.connect();
      await consumer.subscribe({ topics: [this.opts.topic], fromBeginning: true });
      this.handled.startTimer(consumer, this.opts.commitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.opts.partitionConcurrency,
        eachBatch: async (payload) => {
          const batch = this.handleBatch(payload);
          this.batches.add(batch);
          try {
            await batch;
          } finally {
            this.batches.delete(batch);
          }
        },
      });
      this.log.info({ topic: this.opts.topic, groupId: this.opts.groupId }, "consuming");
    } catch (err) {
      this.consumer = null;
      await consumer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  private async handleBatch(p: EachBatchPayload): Promise<void> {
    const items = p.batch.messages.map((m) => this.decode(m, p.batch.partition));
    // One registry snapshot per batch, taken on first use of each environment (batch-indexes.ts).
    const batch = new BatchIndexes(this.opts.registry, (fns) => this.indexOf(fns));
    for (let i = 0; i < items.length; i += this.opts.chunkSize) {
      const chunk = items.slice(i, i + this.opts.chunkSize);
      // A chunk the executor refuses (INVALID_ARGUMENT) is taken one event at a time instead, so
      // only the refused events are set aside and the rest start as usual.
      const oneByOne = async () => {
        for (const item of chunk) {
          const each = () => this.processChunk([item], batch, p);
          if (!(await this.retrying(p, each, (err) => this.setAside(item, err, batch.indexes)))) return;
        }
      };
      const done = await this.retrying(p, () => this.processChunk(chunk, batch, p), oneByOne);
      if (!done) return; // stopping or rebalanced: leave the rest unresolved for redelivery
      const last = chunk[chunk.length - 1];
      if (last) {
        p.resolveOffset(last.offset);
        this.handled.mark(p.batch.partition, last.offset);
      }
      await p.heartbeat();
    }
  }

  private indexOf(fns: StoredFunction[]): FunctionIndex {
    let index = this.indexByList.get(fns);
    if (!index) {
      index = buildIndex(fns);
      this.indexByList.set(fns, index);
    }
    return index;
  }

  /** Creates the runs of a chunk of messages. Safe to repeat: run ids are stable per pair. */
  private async processChunk(chunk: Item[], batch: BatchIndexes, p: EachBatchPayload): Promise<void> {
    const chunkStartMs = Date.now();
    const envs = new Set<string>();
    for (const it of chunk) if (it.event) envs.add(it.event.environmentId);
    // Matched again when an environment turns out to have changed since its copy was read: once
    // per such environment at most, as it is then read from Redis (batch-indexes.ts).
    for (;;) {
      await batch.prepare(envs);
      if (await this.startRuns(chunk, envs, batch, chunkStartMs, p)) return;
    }
  }

  /**
   * Matches a chunk and starts its runs. False when an environment turned out to have changed
   * (batch-indexes.ts): nothing was written for it then, and the chunk is matched again.
   */
  private async startRuns(
    chunk: Item[],
    envs: Set<string>,
    batch: BatchIndexes,
    chunkStartMs: number,
    p: EachBatchPayload,
  ): Promise<boolean> {
    const indexes = batch.indexes;
    const pairs: Array<{ record: EventRecord; event: unknown; fn: ReturnType<typeof matchEvent>[number] }> =
      [];
    const buffered: Parameters<Buffers["add"]>[0] = [];
    const failedInvokes: PauseResume[] = [];
    let matched = 0;
    for (const it of chunk) {
      if (!it.record || !it.event) continue;
      const fns = matchEvent(indexes, it.event);
      if (fns.length > 0) matched++;
      for (const fn of fns) {
        if (buffers(fn, it.event.event)) {
          buffered.push({
            fn,
            environmentId: it.record.environmentId,
            eventId: it.record.eventId,
            eventJson: it.record.eventJson,
            event: it.event.event,
          });
        } else {
          pairs.push({ record: it.record, event: it.event.event, fn });
        }
      }
      const index = indexes.get(it.event.environmentId);
      if (it.event.name === INVOKED && (!index || !invokedFunction(index, it.event))) {
        const failed = unknownInvokeTarget(it.record, it.event.event);
        if (failed) failedInvokes.push(failed);
      }
    }
    // The waits the chunk's events may resume are listed alongside the runs' creation, so both
    // calls reach the executor in one turn and the chunk waits for them once.
    const candidates = waitCandidates(chunk);
    let listing: Promise<Pause[]> | undefined;
    const listPauses = () => {
      if (!listing) {
        listing = this.opts.pauses.list(pauseQueries(candidates));
        listing.catch(() => undefined); // awaited below, unless a schedule call failed first
      }
      return listing;
    };
    // Environments whose version admit.lua does not check are read now, before any write.
    const admitted = new Set(pairs.map((x) => x.record.environmentId));
    if ((await batch.check([...envs].filter((env) => !admitted.has(env)))).length > 0) return false;
    if (pairs.length > 0) {
      const { decisions, stale } = await this.admitter.admit(
        pairs.map(({ record, event, fn }) => ({
          environmentId: record.environmentId,
          fn: fn.fn,
          eventId: record.eventId,
          event,
        })),
        (env) => batch.uncheckedVersion(env),
      );
      if (stale.size > 0) {
        // The other environments' decisions stand: deciding their pairs again answers the same.
        batch.drop(stale);
        return false;
      }
      batch.checked(admitted);
      // The same event twice in one chunk yields the same decision: send that run once.
      const runs = new Map<string, RunSpec>();
      const skips = new Map<string, SkipRecord>();
      pairs.forEach(({ record, event, fn }, i) => {
        const d = decisions[i];
        if (d?.kind === "skip") {
          skips.set(`${record.environmentId}\n${record.eventId}\n${fn.fn.id}`, {
            accountId: record.accountId,
            environmentId: record.environmentId,
            eventId: record.eventId,
            functionId: fn.fn.id,
            reason: d.reason,
            atMs: Date.now(),
            detail: d.detail,
          });
          return;
        }
        if (!d || d.kind === "buffered" || runs.has(d.runId)) return;
        const trace = runSpan(fn, d.runId, "event", record.traceParent, chunkStartMs);
        runs.set(d.runId, runSpecOf(fn, record.environmentId, d.runId, record.eventJson, event, trace));
      });
      if (skips.size > 0) {
        await this.opts.skips([...skips.values()]);
        countSkips([...skips.values()]);
      }
      for (const part of scheduleCalls([...runs.values()], this.opts.chunkSize, SCHEDULE_MAX_BYTES)) {
        const scheduled = this.opts.schedule(part);
        listPauses();
        await scheduled;
        runsCounter.inc(part.length);
        await p.heartbeat();
      }
    }
    await this.opts.buffers.add(buffered);
    // An invoke of a function this environment does not have resolves its step with an error.
    await this.opts.pauses.resume(failedInvokes);
    await this.resumeWaits(candidates, await listPauses());
    const valid = chunk.filter((it) => it.event).length;
    eventsCounter.inc({ outcome: "matched" }, matched);
    eventsCounter.inc({ outcome: "unmatched" }, valid - matched);
    eventsCounter.inc({ outcome: "invalid" }, chunk.length - valid);
    return true;
  }

  /** Resumes the waits the chunk's events match (idempotent per wait and event, like the rest). */
  private async resumeWaits(candidates: WaitCandidate[], pauses: Pause[]): Promise<void> {
    if (pauses.length === 0) return;
    const resumes = matchPauses(candidates, pauses);
    await this.opts.pauses.resume(resumes);
    waitsCounter.inc(resumes.length);
  }

  /**
   * An event the executor refused for what it is: retrying cannot help, so it is set aside with a
   * log line and a metric, and each function it matched records a skip that says why (GET
   * /v1/events/<id>/skips), instead of blocking its partition.
   */
  private async setAside(
    item: Item,
    err: ValidationError,
    indexes: Map<string, FunctionIndex>,
  ): Promise<void> {
    const { record, event } = item;
    eventsCounter.inc({ outcome: "refused" });
    this.log.error(
      {
        eventId: record?.eventId,
        environmentId: record?.environmentId,
        offset: item.offset,
        err: err.message,
      },
      "the executor refused this event's runs; setting the event aside (its skips say why)",
    );
    if (!record || !event) return;
    const skips: SkipRecord[] = matchEvent(indexes, event).map((fn) => ({
      accountId: record.accountId,
      environmentId: record.environmentId,
      eventId: record.eventId,
      functionId: fn.fn.id,
      reason: SkipReason.SKIP_REASON_REFUSED,
      atMs: Date.now(),
      detail: `refused by the executor: ${err.message}`.slice(0, 1_000),
    }));
    if (skips.length === 0) return;
    await this.opts.skips(skips);
    countSkips(skips);
  }

  /**
   * Runs `work` until it succeeds (true), or until the consumer stops or the partition is taken
   * away (false), heartbeating between tries. Kafka errors (a rebalance seen by heartbeat)
   * propagate so kafkajs can rejoin. When `work` is refused as invalid (ValidationError:
   * INVALID_ARGUMENT from the executor), which cannot pass on a retry, `onRefused` runs instead
   * (and is retried while it fails otherwise).
   */
  private async retrying(
    p: EachBatchPayload,
    work: () => Promise<void>,
    onRefused?: (err: ValidationError) => Promise<void>,
  ): Promise<boolean> {
    const alive = () => this.running && p.isRunning() && !p.isStale();
    if (!alive()) return false;
    const transient = (err: unknown) => {
      if (isKafkaError(err)) return false;
      retriesCounter.inc();
      return true;
    };
    const options: RetryOptions = {
      log: this.log,
      what: `schedule the runs of partition ${p.batch.partition} from offset ${p.batch.firstOffset()}`,
      backoff: { firstMs: this.opts.retryMinMs, maxMs: this.opts.retryMaxMs },
      signal: this.stopping.signal,
      shouldContinue: alive,
      beforeAttempt: () => p.heartbeat(),
      isTransient: (err) => !(onRefused && err instanceof ValidationError) && transient(err),
    };
    try {
      return await retry(work, options);
    } catch (err) {
      if (!(onRefused && err instanceof ValidationError)) throw err;
      return retry(() => onRefused(err), { ...options, isTransient: transient });
    }
  }

  private decode(m: KafkaMessage, partition: number): Item {
    const none = { offset: m.offset, record: null, event: null };
    if (!m.value) return none;
    let record: EventRecord;
    let parsed: unknown;
    try {
      record = EventRecord.decode(m.value);
      parsed = JSON.parse(record.eventJson);
    } catch (err) {
      this.log.error({ err, partition, offset: m.offset }, "undecodable event record; skipping it");
      return none;
    }
    const name = (parsed as { name?: unknown } | null)?.name;
    if (typeof name !== "string" || !record.environmentId || !record.eventId) {
      this.log.error(
        { partition, offset: m.offset, eventId: record.eventId },
        "event record without name, environment or id; skipping it",
      );
      return none;
    }
    return {
      offset: m.offset,
      record,
      event: { accountId: record.accountId, environmentId: record.environmentId, name, event: parsed },
    };
  }
}

/** The chunk's valid events, as the wait matcher takes them. */
function waitCandidates(chunk: Item[]): WaitCandidate[] {
  const candidates: WaitCandidate[] = [];
  for (const it of chunk) {
    if (!it.record || !it.event) continue;
    candidates.push({
      environmentId: it.event.environmentId,
      name: it.event.name,
      eventId: it.record.eventId,
      receivedAtMs: it.record.receivedAtMs,
      event: it.event.event,
      eventJson: it.record.eventJson,
    });
  }
  return candidates;
}

/** Splits runs into ScheduleRuns calls of at most `maxRuns` runs and `maxBytes` of events JSON
 * (a single run larger than that still gets a call of its own). */
export function scheduleCalls(runs: RunSpec[], maxRuns: number, maxBytes: number): RunSpec[][] {
  const calls: RunSpec[][] = [];
  let current: RunSpec[] = [];
  let bytes = 0;
  for (const run of runs) {
    const size = run.eventsJson.reduce((n, e) => n + Buffer.byteLength(e), 0);
    if (current.length > 0 && (current.length >= maxRuns || bytes + size > maxBytes)) {
      calls.push(current);
      current = [];
      bytes = 0;
    }
    current.push(run);
    bytes += size;
  }
  if (current.length > 0) calls.push(current);
  return calls;
}

// kafkajs is CommonJS and its error classes are not named exports under ESM; their names are stable.
function isKafkaError(err: unknown): boolean {
  return err instanceof Error && err.name.startsWith("KafkaJS");
}
