// The items of debounces and batches (README "Debounce and batching"): they have no run; the
// runner, which keeps the buffered events, starts the run when the item comes due.
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { ExecuteDeps } from "./execute.js";
import type { ItemContext } from "./work-loop.js";

/** What the runner's FireDebounce and FireBatch are given (the item's payload names the buffer). */
export interface BufferFire {
  environmentId: string;
  functionId: string;
  id: string;
  keyHash: string;
}

/**
 * Fires a debounce or a batch. A debounce that later events pushed back comes again at its new
 * due time; FireDebounce and FireBatch are idempotent, so a redelivered item starts no second run.
 * Re-arms and retries count an attempt, so the queue resets the item's deliveries and never
 * dead-letters it for being pushed back many times or for a runner outage.
 */
export async function fireBuffer(
  deps: ExecuteDeps,
  item: NewItem,
  ctx: ItemContext,
  log: Logger,
  systemDelay: (attempt: number) => number,
): Promise<void> {
  let p: { id?: unknown; keyHash?: unknown };
  try {
    p = JSON.parse(item.payload) as typeof p;
  } catch {
    p = {};
  }
  if (typeof p.id !== "string" || typeof p.keyHash !== "string") {
    log.error("debounce or batch item without its buffer's id; dropping it");
    await ctx.complete([]);
    return;
  }
  const req = {
    environmentId: item.environmentId,
    functionId: item.functionId,
    id: p.id,
    keyHash: p.keyHash,
  };
  try {
    if (item.kind === ItemKind.ITEM_KIND_DEBOUNCE) {
      const res = await deps.fireDebounce(req);
      if (res.dueAtMs > 0) {
        await ctx.retry(res.dueAtMs, item.attempt + 1);
        return;
      }
    } else {
      await deps.fireBatch(req);
    }
    await ctx.complete([]);
  } catch (err) {
    log.warn({ err: String(err), tries: item.attempt + 1 }, "cannot fire the debounce or batch; retrying");
    await ctx.retry(systemDelay(item.attempt), item.attempt + 1);
  }
}
