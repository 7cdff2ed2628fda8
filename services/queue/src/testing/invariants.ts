// Test support: reads a whole shard and checks the queue's structural invariants, so tests can
// assert them after every step instead of trusting each script in isolation: each item in exactly
// one place, no parent pointer later than its child's earliest score (or forceAt) and none to an
// empty child, and every leased member of a concurrency set scored with its lease expiry.
import type { Redis } from "ioredis";
import { parseRecord } from "../item-record.js";
import type { ShardKeys } from "../keys.js";
import { SCORE_SCALE } from "../queue.js";

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
  const l = await redis.zrange(keys.leased, 0, "-1", "WITHSCORES");
  for (let i = 0; i < l.length; i += 2) leased.set(l[i] as string, Number(l[i + 1]));
  const dead = new Set(await redis.zrange(keys.dlq, 0, "-1"));
  const partitions = new Map<string, { acct: string; pid: string }>();
  for (const it of items) partitions.set(keys.partition(it.acct, it.pid), { acct: it.acct, pid: it.pid });

  const pipe = redis.pipeline();
  for (const it of items) pipe.zscore(keys.partition(it.acct, it.pid), it.id);
  const scores = (await pipe.exec()) ?? [];
  for (const [i, it] of items.entries()) {
    const inPart = scores[i]?.[1] != null;
    const places = [inPart, leased.has(it.id), dead.has(it.id)].filter(Boolean).length;
    if (places !== 1) problems.push(`item ${it.id} is in ${places} places`);
    if (it.st === "r" && !inPart) problems.push(`ready item ${it.id} not in its partition`);
    if (it.st === "l" && leased.get(it.id) !== it.exp) problems.push(`leased item ${it.id}: L score != exp`);
    if (it.st === "d" && !dead.has(it.id)) problems.push(`dead item ${it.id} not in dlq`);
  }
  for (const id of leased.keys()) if (raw[id] === undefined) problems.push(`L member ${id} has no item`);

  const forced = await redis.hgetall(keys.forced);
  /** The latest score a partition's pointer may have: its head, or its forceAt while blocked. */
  const latest = (acct: string, pid: string, head: number) => {
    const f = forced[`${acct}\n${pid}`];
    return f === undefined ? head : Math.max(head, Number(f) * SCORE_SCALE);
  };
  const accounts = new Set([...items.map((i) => i.acct), ...(await redis.zrange(keys.accounts, 0, "-1"))]);
  for (const [partKey, { acct, pid }] of partitions) {
    const head = await redis.zrange(partKey, 0, "0", "WITHSCORES");
    const ptr = await redis.zscore(keys.account(acct), pid);
    if (head.length === 0) continue;
    if (ptr === null) problems.push(`partition ${pid} of ${acct} has no pointer`);
    else if (Number(ptr) > latest(acct, pid, Number(head[1])))
      problems.push(`pointer of ${pid} is later than its head`);
  }
  // Pointers are never later than their child (a later one would strand items) and never name an
  // empty child. They may be earlier: a slot freed or a resume wakes blocked partitions "now", and
  // claim sets them right when it finds nothing due.
  for (const acct of accounts) {
    const ptrs = await redis.zrange(keys.account(acct), 0, "-1", "WITHSCORES");
    for (let i = 0; i < ptrs.length; i += 2) {
      const pid = ptrs[i] as string;
      const head = await redis.zrange(keys.partition(acct, pid), 0, "0", "WITHSCORES");
      if (head.length === 0) problems.push(`pointer of ${pid} of ${acct} names an empty partition`);
      else if (Number(ptrs[i + 1]) > latest(acct, pid, Number(head[1])))
        problems.push(`pointer of ${pid} of ${acct} is later than its head`);
    }
    const head = await redis.zrange(keys.account(acct), 0, "0", "WITHSCORES");
    const ptr = await redis.zscore(keys.accounts, acct);
    if (head.length === 0) {
      if (ptr !== null) problems.push(`account ${acct} is pointed at but has no partitions`);
      continue;
    }
    if (ptr === null) problems.push(`account ${acct} has no pointer`);
    else if (Number(ptr) > Number(head[1]))
      problems.push(`pointer of account ${acct} is later than its head`);
  }
  // A leased item counts against each of its concurrency sets with its lease expiry.
  const setPrefix = keys.concurrency("", "").slice(0, -2);
  for (const setKey of await scanKeys(redis, `${setPrefix}*`)) {
    const members = await redis.zrange(setKey, 0, "-1", "WITHSCORES");
    for (let i = 0; i < members.length; i += 2) {
      const it = items.find((x) => x.id === members[i]);
      if (it?.st === "l" && it.exp !== Number(members[i + 1]))
        problems.push(`${setKey}: member ${it.id} scored ${members[i + 1]}, lease expires ${it.exp}`);
    }
  }
  return problems;
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    out.push(...found);
  } while (cursor !== "0");
  return out;
}
