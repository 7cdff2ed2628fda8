// A cron tick's item (README "Cron ticks"): it has no run; the runner starts the tick's run.
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { ExecuteDeps } from "./execute.js";
import type { ItemContext } from "./work-loop.js";

/**
 * One tick of a cron trigger (README "Cron triggers"): the runner starts the tick's run and names
 * the next tick, whose item is enqueued atomically with this one's completion. FireCron is
 * idempotent per tick, so a redelivered tick starts no second run.
 */
export async function fireCronTick(
  deps: ExecuteDeps,
  item: NewItem,
  ctx: ItemContext,
  log: Logger,
  systemDelay: (attempt: number) => number,
): Promise<void> {
  let tick: { cron?: unknown; tickMs?: unknown };
  try {
    tick = JSON.parse(item.payload) as typeof tick;
  } catch {
    tick = {};
  }
  if (typeof tick.cron !== "string" || typeof tick.tickMs !== "number") {
    log.error("cron item without a cron and tick; dropping it");
    await ctx.complete([]);
    return;
  }
  try {
    const res = await deps.fireCron({
      environmentId: item.environmentId,
      functionId: item.functionId,
      cron: tick.cron,
      tickMs: tick.tickMs,
    });
    await ctx.complete(res.current && res.next ? [res.next] : []);
  } catch (err) {
    // The runner (or what it calls) is down: try again later; the tick is late, not lost. The
    // retry counts (attempt + 1), so the queue resets the item's deliveries and never
    // dead-letters a chain during an outage, and the delay grows with each try.
    log.warn({ err: String(err), tries: item.attempt + 1 }, "cannot fire the cron tick; retrying");
    await ctx.retry(systemDelay(item.attempt), item.attempt + 1);
  }
}
