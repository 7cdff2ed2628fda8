// The enqueue script's typed wrapper (enqueue.lua), with its start hand-off, and what an enqueue
// tells the scheduler (the enqueue fast path).

import type { ShardKeys } from "./keys.js";
import { partitionOf, pausedMember } from "./partitions.js";
import type { Scripts } from "./scripts.js";
import type { DueChange, HandOffResult, ItemInput, ReadyPartition } from "./store.js";
import { ENQUEUED, handedOffReply, itemLayout, KIND_START } from "./store.js";

/** Items to lease at once to the holder that enqueues them (enqueue.lua's start hand-off). */
export interface StartHandOff {
  /** Indexes into the enqueued items; each must pass `mayHandOff`. */
  indexes: number[];
  leaseMs: number;
}

/**
 * Whether an item may be handed off as it is enqueued: due now, in a partition without flow
 * control (no concurrency set to take a slot in, not throttled). The script checks the rest.
 */
export function mayHandOff(item: ItemInput): boolean {
  if (item.runAtMs > 0 || item.delayMs > 0) return false;
  const pid = partitionOf(item.environmentId, item.functionId, item.flow, item.kind === KIND_START);
  return pid.startsWith("fn:") && !pid.includes(":c");
}

/** Adds items to one shard (enqueue.lua); codes ENQUEUED, EXISTS or HANDED_OFF, hand-offs by item index. */
export async function enqueueItems(
  s: Scripts,
  keys: ShardKeys,
  items: ItemInput[],
  handOff?: StartHandOff,
): Promise<HandOffResult> {
  const k = [keys.items, keys.seq, keys.accounts, keys.forced, keys.leased, keys.paused];
  const asked = handOff?.indexes ?? [];
  const a: Array<string | number> = [s.now(), items.length, handOff?.leaseMs ?? 0, asked.length];
  for (const i of asked) {
    const item = items[i];
    if (!item) throw new Error(`no item ${i} to hand off`);
    a.push(i + 1, pausedMember(item.accountId, item.environmentId, item.functionId));
  }
  for (const item of items) {
    const l = itemLayout(keys, item);
    k.push(...l.keys);
    a.push(...l.args);
  }
  return handedOffReply(keys.shard, await s.run("enqueue", k, a), "enqueue");
}

/**
 * The partition that `items` (one enqueue call on one shard, with its codes) made due on a shard
 * that had nothing due before, when there is exactly one such partition; see DueChange.ready.
 * Items handed off are leased, not due.
 */
export function newlyReadyPartition(
  due: DueChange,
  items: ItemInput[],
  codes: number[],
): ReadyPartition | undefined {
  const idleBefore = due.beforeMs < 0 || due.beforeMs > due.nowMs;
  if (!idleBefore || due.afterMs < 0 || due.afterMs > due.nowMs) return undefined;
  let ready: ReadyPartition | undefined;
  for (const [i, item] of items.entries()) {
    const dueNow = item.runAtMs > 0 ? item.runAtMs <= due.nowMs : item.delayMs <= 0;
    if (codes[i] !== ENQUEUED || !dueNow) continue;
    const pid = partitionOf(item.environmentId, item.functionId, item.flow, item.kind === KIND_START);
    if (!ready) ready = { accountId: item.accountId, pid };
    else if (ready.accountId !== item.accountId || ready.pid !== pid) return undefined;
  }
  return ready;
}
