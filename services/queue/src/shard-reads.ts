// Plain reads of a shard, for the scheduler and the queue's routing (no script: nothing is
// written, and a read that races a write only makes a round look again or finds an item gone).
import type { Redis } from "ioredis";
import { parseRecord } from "./item-record.js";
import type { ShardKeys } from "./keys.js";
import { type Command, inOneTrip } from "./one-trip.js";

/** Score units per millisecond (see lua/includes/common.lua). */
export const SCORE_SCALE = 1024;

/** Accounts of a shard in due order, with their scores (a window of `limit` from `offset`). */
export async function accountHeads(
  redis: Redis,
  keys: ShardKeys,
  offset: number,
  limit: number,
): Promise<Array<{ id: string; score: number }>> {
  const flat = await redis.zrangebyscore(keys.accounts, "-inf", "+inf", "WITHSCORES", "LIMIT", offset, limit);
  const out: Array<{ id: string; score: number }> = [];
  for (let i = 0; i + 1 < flat.length; i += 2)
    out.push({ id: flat[i] as string, score: Number(flat[i + 1]) });
  return out;
}

/** For each account, the ids of its partitions with items due by `maxScore` (earliest first). */
export function readyPartitions(
  redis: Redis,
  keys: ShardKeys,
  accountIds: string[],
  maxScore: number,
  limit: number,
): Promise<string[][]> {
  return Promise.all(
    accountIds.map((a) => redis.zrangebyscore(keys.account(a), "-inf", maxScore, "LIMIT", 0, limit)),
  );
}

/**
 * Each shard's earliest due time and earliest lease expiry (epoch ms; Infinity = none), read in
 * one trip (the sweep reads all 256 shards: one write instead of 512 on one Redis server).
 */
export async function shardHeads(
  redis: Redis,
  shards: readonly ShardKeys[],
): Promise<Array<{ dueMs: number; expiryMs: number }>> {
  const replies = await inOneTrip(
    redis,
    shards.flatMap((keys): Command[] => [
      (t) => t.zrange(keys.accounts, 0, "0", "WITHSCORES"),
      (t) => t.zrange(keys.leased, 0, "0", "WITHSCORES"),
    ]),
  );
  return shards.map((_, i) => {
    const a = replies[2 * i] as string[];
    const l = replies[2 * i + 1] as string[];
    return {
      dueMs: a[1] === undefined ? Infinity : Math.floor(Number(a[1]) / SCORE_SCALE),
      expiryMs: l[1] === undefined ? Infinity : Number(l[1]),
    };
  });
}

/** Reads the partition ids of stored items, by id (null when the item is gone). */
export async function itemPartitions(
  redis: Redis,
  keys: ShardKeys,
  itemIds: string[],
): Promise<Array<{ accountId: string; pid: string } | null>> {
  if (itemIds.length === 0) return [];
  const raw = await redis.hmget(keys.items, ...itemIds);
  return raw.map((rec) => {
    if (rec === null) return null;
    const { body } = parseRecord(rec);
    return { accountId: body.acct, pid: body.pid };
  });
}
