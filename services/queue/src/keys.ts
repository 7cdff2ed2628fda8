// Every Redis key and channel name of the queue, built in one place. A shard's keys all carry the
// tag `{<namespace>s<N>}` (the namespace sits inside the tag, never in an ioredis keyPrefix), so
// each script call touches one Redis Cluster slot; `assertOneSlot` checks that in tests.
import calculateSlot from "cluster-key-slot";

const NAMESPACE = /^[A-Za-z0-9_.:-]*$/;

/** The keys of one virtual shard. */
export interface ShardKeys {
  shard: number;
  /** HASH itemId -> item JSON (ready, leased or dead-lettered items). */
  items: string;
  /** STRING "<ms>:<n>": the FIFO tie-break of scores. */
  seq: string;
  /** ZSET accountId -> earliest score of the account's partitions. */
  accounts: string;
  /** ZSET leased itemId -> lease expiry (epoch ms, Redis time). */
  leased: string;
  /** ZSET dead-lettered itemId -> when (epoch ms). */
  dlq: string;
  /** STRING owner token with a PX lease. */
  owner: string;
  /** An empty key of the shard, passed where a script needs a key it will not use. */
  placeholder: string;
  /** ZSET pid -> earliest score of each of the account's partitions. */
  account(accountId: string): string;
  /** ZSET itemId -> score: the ready and future items of one partition. */
  partition(accountId: string, pid: string): string;
  /** STRING completion tombstone (value = the generation completed), with a TTL. */
  seen(itemId: string): string;
  /** HASH `<acct>\n<pid>` -> epoch ms before which a blocked partition is not looked at. */
  forced: string;
  /** SET `<acct>\n<env>\n<fn>` of paused functions. */
  paused: string;
  /** SET pids of a paused function's partitions that claim pushed back (resume wakes them). */
  pausedPartitions(accountId: string, environmentId: string, functionId: string): string;
  /** ZSET leased itemId -> lease expiry: the items counting against one concurrency limit. */
  concurrency(accountId: string, setId: string): string;
  /** ZSET pid -> ms: partitions waiting for a slot of that concurrency limit (woken on release). */
  blocked(accountId: string, setId: string): string;
  /** STRING the throttle's GCRA theoretical arrival time (epoch ms), with a TTL. */
  throttle(accountId: string, environmentId: string, functionId: string, keyHash: string): string;
}

/** Rejects a namespace that could break the hash tag. */
export function checkNamespace(namespace: string): string {
  if (!NAMESPACE.test(namespace)) throw new Error(`bad queue key namespace: ${namespace}`);
  return namespace;
}

/** The keys of shard `shard` under `namespace` (e.g. "" in production, "t123:" in a test). */
export function shardKeys(namespace: string, shard: number): ShardKeys {
  const base = `q:{${checkNamespace(namespace)}s${shard}}:`;
  return {
    shard,
    items: `${base}it`,
    seq: `${base}seq`,
    accounts: `${base}A`,
    leased: `${base}L`,
    dlq: `${base}dlq`,
    owner: `${base}owner`,
    placeholder: `${base}-`,
    account: (accountId) => `${base}a:${enc(accountId)}`,
    partition: (accountId, pid) => `${base}p:${enc(accountId)}:${pid}`,
    seen: (itemId) => `${base}seen:${itemId}`,
    forced: `${base}pm`,
    paused: `${base}fp`,
    pausedPartitions: (a, e, f) => `${base}pp:${enc(a)}:${enc(e)}:${enc(f)}`,
    concurrency: (a, setId) => `${base}c:${enc(a)}:${setId}`,
    blocked: (a, setId) => `${base}bk:${enc(a)}:${setId}`,
    throttle: (a, e, f, h) => `${base}t:${enc(a)}:${enc(e)}:${enc(f)}:${h}`,
  };
}

/** The partition of a function's items that carry no flow control: one per (environment, function). */
export function partitionId(environmentId: string, functionId: string): string {
  return `fn:${enc(environmentId)}:${enc(functionId)}`;
}

/** Keys shared by every replica: membership and the wake channel. */
export function globalKeys(namespace: string): { members: string; wakeChannel: string } {
  const base = `q:{${checkNamespace(namespace)}m}:`;
  return { members: `${base}members`, wakeChannel: `${base}wake` };
}

/** Throws when `keys` do not all map to one Redis Cluster slot. */
export function assertOneSlot(keys: readonly string[]): void {
  const first = keys[0];
  if (first === undefined) return;
  const slot = calculateSlot(first);
  for (const k of keys) {
    if (calculateSlot(k) !== slot) throw new Error(`keys span several slots: ${first} and ${k}`);
  }
}

// Ids go inside key names; encoding keeps the separators unambiguous.
export function enc(s: string): string {
  return encodeURIComponent(s);
}
