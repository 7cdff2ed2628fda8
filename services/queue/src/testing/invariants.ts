// Test support: reads a whole shard and checks the queue's structural invariants, so tests can
// assert them after every step instead of trusting each script in isolation.
import type { Redis } from "ioredis";
import type { ShardKeys } from "../keys.js";
import { parseRecord } from "../store.js";

interface Item {
  id: string;
  acct: string;
  pid: string;
  st: string;
  exp: number;
}

/** Returns a list of broken invariants (empty when the shard is consistent). */
export async function shardProblems(redis: Redis, keys: ShardKeys): Promise<string[]> {
  const problems: string[] = [];
  const raw = await redis.hgetall(keys.items);
  const items: Item[] = Object.entries(raw).map(([id, rec]) => {
    const r = parseRecord(rec);
    return { id, acct: r.body.acct, pid: r.body.pid, st: r.state, exp: r.leaseExpiresAtMs };
  });
  const leased = new Map<string, number>();
  const l = await redis.zrange(keys.leased, 0, -1, "WITHSCORES");
  for (let i = 0; i < l.length; i += 2) leased.set(l[i] as string, Number(l[i + 1]));
  const dead = new Set(await redis.zrange(keys.dlq, 0, -1));
  const partitions = new Map<string, { acct: string; pid: string }>();
  for (const it of items) partitions.set(keys.partition(it.acct, it.pid), { acct: it.acct, pid: it.pid });

  for (const it of items) {
    const inPart = (await redis.zscore(keys.partition(it.acct, it.pid), it.id)) !== null;
    const places = [inPart, leased.has(it.id), dead.has(it.id)].filter(Boolean).length;
    if (places !== 1) problems.push(`item ${it.id} is in ${places} places`);
    if (it.st === "r" && !inPart) problems.push(`ready item ${it.id} not in its partition`);
    if (it.st === "l" && leased.get(it.id) !== it.exp) problems.push(`leased item ${it.id}: L score != exp`);
    if (it.st === "d" && !dead.has(it.id)) problems.push(`dead item ${it.id} not in dlq`);
  }
  for (const id of leased.keys()) if (raw[id] === undefined) problems.push(`L member ${id} has no item`);

  const accounts = new Set(items.map((i) => i.acct));
  for (const [partKey, { acct, pid }] of partitions) {
    const head = await redis.zrange(partKey, 0, 0, "WITHSCORES");
    const ptr = await redis.zscore(keys.account(acct), pid);
    if (head.length === 0) continue;
    if (ptr === null) problems.push(`partition ${pid} of ${acct} has no pointer`);
    else if (Number(ptr) > Number(head[1])) problems.push(`pointer of ${pid} is later than its head`);
  }
  for (const acct of accounts) {
    const head = await redis.zrange(keys.account(acct), 0, 0, "WITHSCORES");
    const ptr = await redis.zscore(keys.accounts, acct);
    if (head.length === 0) continue;
    if (ptr === null) problems.push(`account ${acct} has no pointer`);
    else if (Number(ptr) > Number(head[1]))
      problems.push(`pointer of account ${acct} is later than its head`);
  }
  return problems;
}
