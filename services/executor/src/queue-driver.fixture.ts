// Plays the queue for the executor's item-handler suites: each completion's next items are
// handled in turn (the first one due now at once, marked handed off, as the queue hands it off),
// a retry or a release hands the same item back, and a STALE completion hands the item out again.

import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import { expect } from "vitest";
import type { QueueOp } from "./execute-durable.suite.fixture.js";
import type { RunStore } from "./state.js";
import { runKeys } from "./state.js";
import type { ItemContext, ItemHandler, OpOutcome } from "./work-loop.js";

export interface QueueDriverDeps {
  store: RunStore;
  redis: Redis;
  /** The run-state key prefix the store uses. */
  prefix: string;
}

/**
 * Plays the queue: handles items until the run has no next item. `staleCompletions` is how many
 * of the first completions come back STALE, or a predicate picking them (each is then handed
 * out again, as the queue does after a lost lease).
 */
export async function driveQueue(
  { store, redis, prefix }: QueueDriverDeps,
  handler: ItemHandler,
  first: NewItem,
  staleCompletions: number | ((item: NewItem) => boolean) = 0,
) {
  const pending = [first];
  const enqueued = new Set([first.id]);
  // As the queue does, a completion's first next item due now is leased to the completer at once
  // (handed off): it runs next, marked so, before anything else queued.
  const handedOff = new Set<string>();
  const ops: QueueOp[] = [];
  let stale = typeof staleCompletions === "number" ? staleCompletions : 0;
  const staleWhen = typeof staleCompletions === "function" ? staleCompletions : () => false;
  while (pending.length > 0 && ops.length < 40) {
    const item = pending.shift() as NewItem;
    const ctx: ItemContext = {
      lease: { itemId: item.id, accountId: item.accountId, generation: 1, partitionId: "" },
      signal: new AbortController().signal,
      handedOff: handedOff.delete(item.id),
      complete: async (next): Promise<OpOutcome> => {
        ops.push({ op: "complete", item, next });
        // The state must already hold what this completion moves past: a numbered call is the
        // last one numbered, and a run is left without a next item only when it ended or
        // waits on pending ops.
        const s = await store.load(item.runId);
        for (const n of next) {
          expect(n.id.startsWith(`${item.runId}:`)).toBe(true);
          if (/:c\d+$/.test(n.id)) expect(n.id).toBe(`${item.runId}:c${s?.calls}`);
        }
        if (next.length === 0 && s?.status === "running") {
          // ... or the item resolved its op while another one was pending (that one goes on).
          const keys = runKeys(prefix, item.runId);
          const quiet = Object.values(await redis.hgetall(keys.resolved)).includes(`0:${item.id}`);
          expect(quiet || (await redis.hlen(keys.pending)) > 0).toBe(true);
        }
        if (stale > 0 || staleWhen(item)) {
          stale = Math.max(0, stale - 1);
          pending.push(item); // lease lost: the queue hands the same item out again
          return "stale";
        }
        // Like the queue, an id enqueued before is not enqueued again.
        let handing = true;
        for (const n of next) {
          if (enqueued.has(n.id)) continue;
          enqueued.add(n.id);
          if (handing && n.runAtMs <= 0 && n.delayMs <= 0) {
            handing = false;
            handedOff.add(n.id);
            pending.unshift(n);
          } else pending.push(n);
        }
        return "ok";
      },
      retry: async (runAtMs, attempt): Promise<OpOutcome> => {
        ops.push({ op: "retry", item, runAtMs, attempt });
        pending.push({ ...item, attempt });
        return "ok";
      },
      release: async (): Promise<OpOutcome> => {
        ops.push({ op: "release", item });
        pending.push(item);
        return "ok";
      },
    };
    await handler(item, ctx);
  }
  return ops;
}

/** An ItemContext that only records what the handler told the queue (each op answered "ok"). */
export function recordingCtx(
  item: NewItem,
  ops: QueueOp[],
  signal = new AbortController().signal,
): ItemContext {
  return {
    lease: { itemId: item.id, accountId: item.accountId, generation: 1, partitionId: "" },
    signal,
    complete: async (next) => {
      ops.push({ op: "complete", item, next });
      return "ok";
    },
    retry: async (runAtMs, attempt) => {
      ops.push({ op: "retry", item, runAtMs, attempt });
      return "ok";
    },
    release: async () => {
      ops.push({ op: "release", item });
      return "ok";
    },
  };
}
