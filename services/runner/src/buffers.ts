// Debounce and batching: events of such functions do not start runs on their own. They are
// buffered in the runner's Redis keys (debounce.lua, batch-append.lua), and a queue item is owed
// for the moment the buffer must fire: `debounce:<fn>:<id>` at the debounce's due time,
// `batch:<fn>:<id>` at the batch's timeout (and `...:full` at once when it fills up). Item ids are
// deterministic and always enqueued again, so a crash between buffering and enqueueing is repaired
// by the Kafka redelivery. When an item comes due, the executor calls FireDebounce or FireBatch,
// which start the run (idempotent per debounce or batch: its run id is claimed like an event's).

import { readFileSync } from "node:fs";
import type { Clock } from "@stepline/internal/clock";
import { ValidationError } from "@stepline/internal/errors";
import { newId } from "@stepline/internal/ids";
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis, Result } from "ioredis";
import type { ScheduleRuns } from "./consumer.js";
import { celMatches } from "./expr.js";
import { flowConfig, keyHash } from "./flow.js";
import { IDEMPOTENCY_TTL_S } from "./idempotency.js";
import {
  batchListKey,
  batchMetaKey,
  batchPointerKey,
  debounceFiredKey,
  debounceKey,
  idemKey,
} from "./keys.js";
import type { StoredFunction } from "./model.js";
import type { Registry } from "./registry.js";
import { startRun } from "./runs.js";

declare module "ioredis" {
  interface RedisCommander<Context> {
    runnerDebounce(
      rec: string,
      decision: string,
      ...args: Array<string | number>
    ): Result<unknown[], Context>;
    runnerDebounceFire(
      rec: string,
      fired: string,
      ...args: Array<string | number>
    ): Result<unknown[], Context>;
    runnerBatchAppend(
      ptr: string,
      list: string,
      meta: string,
      decision: string,
      ...args: Array<string | number>
    ): Result<unknown[], Context>;
    runnerBatchFire(ptr: string, list: string, meta: string, id: string): Result<string[], Context>;
  }
}

const lua = (name: string) => readFileSync(new URL(`../lua/${name}.lua`, import.meta.url), "utf8");

/** How long a batch's keys live: well past any batch timeout (at most a minute), for late fires. */
const BATCH_TTL_S = IDEMPOTENCY_TTL_S;

/** The payload of a debounce or batch item. */
interface BufferPayload {
  id: string;
  keyHash: string;
}

/** An event of a function that buffers it. */
export interface BufferedEvent {
  fn: StoredFunction;
  environmentId: string;
  eventId: string;
  eventJson: string;
  event: unknown;
}

export interface BuffersDeps {
  redis: Redis;
  registry: Registry;
  /** QueueService.Enqueue (rejects when not every item was taken). */
  enqueue(items: NewItem[]): Promise<void>;
  schedule: ScheduleRuns;
  clock: Clock;
  log: Logger;
}

/** True when a function's events are buffered rather than starting runs directly. */
export function buffers(fn: StoredFunction, event: unknown): boolean {
  const flow = flowConfig(fn.fn);
  if (flow.debounce) return true;
  // An event that fails the batch's `if` runs at once, alone (Inngest's rule).
  if (flow.batchEvents) return !flow.batchEvents.if || celMatches(flow.batchEvents.if, { event });
  return false;
}

export class Buffers {
  constructor(private readonly deps: BuffersDeps) {
    const r = deps.redis;
    r.defineCommand("runnerDebounce", { numberOfKeys: 2, lua: lua("debounce") });
    r.defineCommand("runnerDebounceFire", { numberOfKeys: 2, lua: lua("debounce-fire") });
    r.defineCommand("runnerBatchAppend", { numberOfKeys: 4, lua: lua("batch-append") });
    r.defineCommand("runnerBatchFire", { numberOfKeys: 3, lua: lua("batch-fire") });
  }

  /** Buffers events (in order) and enqueues the items their buffers owe. */
  async add(events: BufferedEvent[]): Promise<void> {
    const items: NewItem[] = [];
    // One at a time: events of one buffer must apply in order (the latest event wins a debounce).
    for (const e of events) {
      const flow = flowConfig(e.fn.fn);
      if (flow.debounce) items.push(...(await this.debounce(e, flow.debounce)));
      else if (flow.batchEvents) items.push(...(await this.batch(e, flow.batchEvents)));
    }
    if (items.length > 0) await this.deps.enqueue(items);
  }

  private async debounce(
    e: BufferedEvent,
    d: NonNullable<ReturnType<typeof flowConfig>["debounce"]>,
  ): Promise<NewItem[]> {
    const key = d.key ? keyHash(d.key, e.event) : "";
    const ts = (e.event as { ts?: unknown } | null)?.ts;
    const [id, due] = await this.deps.redis.runnerDebounce(
      debounceKey(e.environmentId, e.fn.fn.id, key),
      idemKey(e.environmentId, e.fn.fn.id, e.eventId),
      newId(),
      e.eventJson,
      typeof ts === "number" && Number.isFinite(ts) ? Math.trunc(ts) : this.deps.clock.now(),
      d.periodMs,
      d.timeoutMs,
      IDEMPOTENCY_TTL_S,
    );
    if (id === "") return [];
    return [
      bufferItem(e, ItemKind.ITEM_KIND_DEBOUNCE, `debounce:${e.fn.fn.id}:${id}`, Number(due), {
        id: String(id),
        keyHash: key,
      }),
    ];
  }

  private async batch(
    e: BufferedEvent,
    b: NonNullable<ReturnType<typeof flowConfig>["batchEvents"]>,
  ): Promise<NewItem[]> {
    const env = e.environmentId;
    const fnId = e.fn.fn.id;
    const key = b.key ? keyHash(b.key, e.event) : "";
    const ptr = batchPointerKey(env, fnId, key);
    for (let tries = 0; tries < 10; tries++) {
      const open = await this.deps.redis.get(ptr);
      const id = open ?? newId();
      const r = await this.deps.redis.runnerBatchAppend(
        ptr,
        batchListKey(env, fnId, id),
        batchMetaKey(env, fnId, id),
        idemKey(env, fnId, e.eventId),
        id,
        open ? 0 : 1,
        e.eventJson,
        b.maxSize,
        BATCH_TTL_S,
      );
      if (r[0] === "retry") continue;
      let batchId = id;
      let size = Number(r[1]);
      let created = Number(r[2]);
      if (r[0] === "dup") {
        // Decided before: a run (the config changed since) owes nothing; an append (a redelivery)
        // owes its items again, in case they were never queued.
        if (!String(r[1]).startsWith("batch:")) return [];
        batchId = String(r[1]).slice("batch:".length);
        const [c, n] = await Promise.all([
          this.deps.redis.hget(batchMetaKey(env, fnId, batchId), "created"),
          this.deps.redis.llen(batchListKey(env, fnId, batchId)),
        ]);
        if (c === null) return []; // long gone: it fired and expired
        created = Number(c);
        size = n;
      }
      const payload = { id: batchId, keyHash: key };
      const itemId = `batch:${fnId}:${batchId}`;
      const items = [bufferItem(e, ItemKind.ITEM_KIND_BATCH, itemId, created + b.timeoutMs, payload)];
      // Full: it starts at once, whichever append filled it (the timeout item fires later, idly).
      if (size >= b.maxSize)
        items.push(bufferItem(e, ItemKind.ITEM_KIND_BATCH, `${itemId}:full`, 0, payload));
      return items;
    }
    throw new Error(`batch of ${fnId} is contended; retrying the event`);
  }

  /** FireDebounce: starts the debounce's run, or says when it is due now. */
  async fireDebounce(req: {
    environmentId: string;
    functionId: string;
    debounceId: string;
    keyHash: string;
  }): Promise<{ dueAtMs: number; runId: string }> {
    checkFire(req.environmentId, req.functionId, req.debounceId, req.keyHash);
    const fn = await this.function(req.environmentId, req.functionId);
    const r = await this.deps.redis.runnerDebounceFire(
      debounceKey(req.environmentId, req.functionId, req.keyHash),
      debounceFiredKey(req.environmentId, req.functionId, req.debounceId),
      req.debounceId,
      IDEMPOTENCY_TTL_S,
    );
    if (r[0] === "wait") return { dueAtMs: Number(r[1]), runId: "" };
    if (r[0] !== "fired" || !fn) {
      this.deps.log.info(
        { functionId: req.functionId, debounceId: req.debounceId },
        "debounce gone; nothing to start",
      );
      return { dueAtMs: 0, runId: "" };
    }
    const runId = await this.start(fn, req.environmentId, `debounce-${req.debounceId}`, [String(r[1])]);
    return { dueAtMs: 0, runId };
  }

  /** FireBatch: closes the batch and starts its run with its events. */
  async fireBatch(req: {
    environmentId: string;
    functionId: string;
    batchId: string;
    keyHash: string;
  }): Promise<{ runId: string; events: number }> {
    checkFire(req.environmentId, req.functionId, req.batchId, req.keyHash);
    const env = req.environmentId;
    const events = await this.deps.redis.runnerBatchFire(
      batchPointerKey(env, req.functionId, req.keyHash),
      batchListKey(env, req.functionId, req.batchId),
      batchMetaKey(env, req.functionId, req.batchId),
      req.batchId,
    );
    const fn = await this.function(env, req.functionId);
    if (events.length === 0 || !fn) return { runId: "", events: 0 };
    const runId = await this.start(fn, env, `batch-${req.batchId}`, events);
    return { runId, events: events.length };
  }

  /** Claims the buffer's run id (stable per buffer) and schedules the run. */
  private start(fn: StoredFunction, env: string, bufferId: string, eventsJson: string[]): Promise<string> {
    return startRun(this.deps, { fn, environmentId: env, claimKey: bufferId, eventsJson, trigger: "buffer" });
  }

  private async function(env: string, fnId: string): Promise<StoredFunction | undefined> {
    const fns = (await this.deps.registry.loadMany([env])).get(env) ?? [];
    return fns.find((f) => f.fn.id === fnId);
  }
}

function checkFire(env: string, fnId: string, id: string, key: string): void {
  if (!env || !fnId || !id)
    throw new ValidationError("environment_id, function_id and the buffer's id are required");
  if (!/^[0-9a-f]{0,64}$/.test(key)) throw new ValidationError("key_hash must be hex");
}

function bufferItem(
  e: BufferedEvent,
  kind: ItemKind,
  id: string,
  runAtMs: number,
  payload: BufferPayload,
): NewItem {
  return {
    id,
    runId: id,
    accountId: e.fn.accountId,
    environmentId: e.environmentId,
    functionId: e.fn.fn.id,
    kind,
    delayMs: 0,
    runAtMs: Math.max(0, runAtMs),
    attempt: 0,
    payload: JSON.stringify(payload),
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
  };
}
