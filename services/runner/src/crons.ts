// Cron triggers as chains of durable queue items (README "Cron triggers"). A sync arms each cron
// trigger: it enqueues the item of its next tick. When a tick comes due an executor leases the
// item and calls FireCron, which starts the tick's run (one run id per tick, claimed like an
// event's) and names the next tick, which the executor enqueues as it completes the item. A tick
// of a cron the function no longer has starts nothing and ends its chain, so a re-sync that
// changes or removes a cron takes effect at the next tick. Nothing lives in a runner's memory:
// any replica serves any tick, and a restart of everything loses none.

import type { Clock } from "@stepline/internal/clock";
import { ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import type { ScheduleRuns } from "./consumer.js";
import { cronEventId, cronItemId, parseCron } from "./cron.js";
import { claimRunIds } from "./idempotency.js";
import type { AppSync } from "./model.js";
import type { Registry } from "./registry.js";
import { runSpan, runSpecOf } from "./runs.js";

/** How far back missed ticks are still fired (each once) after an outage. */
export const CATCH_UP_MS = 10 * 60_000;

/** What a cron item carries (opaque to the queue). */
export interface CronPayload {
  cron: string;
  tickMs: number;
}

export interface CronDeps {
  registry: Registry;
  redis: Redis;
  /** QueueService.Enqueue; must reject unless every item was taken. */
  enqueue(items: NewItem[]): Promise<void>;
  schedule: ScheduleRuns;
  clock: Clock;
  log: Logger;
}

export class Crons {
  constructor(private readonly deps: CronDeps) {}

  /** Enqueues the next tick of every cron trigger of a synced app (idempotent per tick). */
  async arm(sync: AppSync): Promise<void> {
    const now = this.deps.clock.now();
    const items: NewItem[] = [];
    for (const fn of sync.functions) {
      for (const t of fn.triggers) {
        if (t.kind !== "cron") continue;
        const next = parseCron(t.cron).next(now);
        if (next !== null) items.push(cronItem(sync.accountId, sync.environmentId, fn.id, t.cron, next));
      }
    }
    if (items.length > 0) await this.deps.enqueue(items);
  }

  /** Starts the run of one tick; see the module comment. */
  async fire(req: {
    environmentId: string;
    functionId: string;
    cron: string;
    tickMs: number;
  }): Promise<{ current: boolean; nextTickMs: number; runId: string; next: NewItem | undefined }> {
    const startMs = Date.now();
    if (!req.environmentId || !req.functionId || !req.cron || req.tickMs <= 0) {
      throw new ValidationError("environment_id, function_id, cron and tick_ms are required");
    }
    const fns = (await this.deps.registry.loadMany([req.environmentId])).get(req.environmentId) ?? [];
    const fn = fns.find((f) => f.fn.id === req.functionId);
    if (!fn?.fn.triggers.some((t) => t.kind === "cron" && t.cron === req.cron)) {
      this.deps.log.info(
        { functionId: req.functionId, cron: req.cron },
        "cron no longer synced; its chain ends",
      );
      return { current: false, nextTickMs: 0, runId: "", next: undefined };
    }
    const eventId = cronEventId(fn.fn.id, req.cron, req.tickMs);
    const [runId] = await claimRunIds(this.deps.redis, [
      { environmentId: req.environmentId, functionId: fn.fn.id, eventId },
    ]);
    const event = { name: "inngest/scheduled.timer", id: eventId, ts: req.tickMs, data: { cron: req.cron } };
    const trace = runSpan(fn, runId as string, "cron", undefined, startMs);
    await this.deps.schedule([
      runSpecOf(fn, req.environmentId, runId as string, JSON.stringify(event), event, trace),
    ]);
    // Ticks missed during a short outage fire late, each once; after a long one the chain goes
    // on from now rather than firing a burst of stale ticks.
    const from = Math.max(req.tickMs, this.deps.clock.now() - CATCH_UP_MS);
    const next = parseCron(req.cron).next(from);
    return {
      current: true,
      nextTickMs: next ?? 0,
      runId: runId as string,
      next: next === null ? undefined : cronItem(fn.accountId, req.environmentId, fn.fn.id, req.cron, next),
    };
  }
}

/** The queue item of one tick of a function's cron. */
export function cronItem(
  accountId: string,
  environmentId: string,
  functionId: string,
  cron: string,
  tickMs: number,
): NewItem {
  const id = cronItemId(environmentId, functionId, cron, tickMs);
  return {
    id,
    runId: id,
    accountId,
    environmentId,
    functionId,
    kind: ItemKind.ITEM_KIND_CRON,
    delayMs: 0,
    runAtMs: tickMs,
    attempt: 0,
    payload: JSON.stringify({ cron, tickMs } satisfies CronPayload),
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
  };
}
