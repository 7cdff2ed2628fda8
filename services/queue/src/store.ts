// Typed wrappers over the Lua scripts, one per script, for one shard at a time: they build the
// KEYS/ARGV layout each script's header documents and decode its reply. A refused call is an
// error (Scripts.run maps NOT_OWNER to NotOwnerError); per-item codes are returned as results.

import { type ItemBody, parseRecord } from "./item-record.js";
import type { ShardKeys } from "./keys.js";
import type { FunctionLimits } from "./limits.js";
import { claimLimits } from "./limits.js";
import type { FlowInput, PartitionSpec } from "./partitions.js";
import { concurrencySetId, parsePartition, partitionOf, pausedMember } from "./partitions.js";
import type { Scripts } from "./scripts.js";
import { asInt, asInts, asList, asStrings, ScriptReplyError } from "./scripts.js";

/** What a producer asks to enqueue (the proto NewItem has this shape). */
export interface ItemInput {
  id: string;
  runId: string;
  accountId: string;
  environmentId: string;
  functionId: string;
  kind: number;
  /** Due this many ms after Redis time at enqueue. */
  delayMs: number;
  /** Due at this epoch ms; wins over delayMs when > 0. */
  runAtMs: number;
  attempt: number;
  payload: string;
  /** Absent = no flow control. */
  flow?: FlowInput | undefined;
  /** When the item's run started (epoch ms; 0/absent = score from the due time). */
  runStartedAtMs?: number | undefined;
  /** W3C traceparent of the item's run (""/absent = not traced). */
  traceParent?: string | undefined;
}

/** An item handed out under a lease. */
export interface LeasedItem {
  id: string;
  runId: string;
  accountId: string;
  environmentId: string;
  functionId: string;
  kind: number;
  attempt: number;
  payload: string;
  /** The run's traceparent ("" = not traced). */
  traceParent: string;
  dueMs: number;
  generation: number;
  leaseExpiresAtMs: number;
  /** The item's partition id (a lease echoes it, naming the concurrency sets it counts against). */
  partitionId: string;
  /** Leased as the hand-off of a completion on the same stream (LeasedItem.handed_off). */
  handedOff?: boolean;
  /** Releases since the item's attempt began (LeasedItem.releases). */
  releases: number;
}

/** The shard's earliest due time around a mutating call (-1 = the shard holds nothing). */
export interface DueChange {
  shard: number;
  nowMs: number;
  beforeMs: number;
  afterMs: number;
  /**
   * Set when nothing of the shard was due before the op and what it made due now is all in one
   * partition: the owner may claim that partition at once, without reading the shard's ready
   * accounts and partitions first (the enqueue fast path, Queue.enqueue).
   */
  ready?: ReadyPartition | undefined;
}

/** One account's partition. */
export interface ReadyPartition {
  accountId: string;
  pid: string;
}

export interface MutationResult {
  /** One code per input, as the script header documents. */
  codes: number[];
  due: DueChange;
}

export interface ClaimResult {
  nowMs: number;
  /** The shard's earliest due time after the claim (-1 = empty). */
  dueMs: number;
  leased: LeasedItem[];
  deadLettered: string[];
}

export interface ExpiredLease {
  itemId: string;
  /** "" when the lease has no item record (a leftover). */
  accountId: string;
  pid: string;
}

export const ENQUEUED = 1;
export const EXISTS = 0;
export const HANDED_OFF = 2;
export const OK = 1;
export const ALREADY = 2;
export const STALE = -1;
export const EXPIRED = -2;
export const WRONG_PARTITION = -2;
export const RECLAIMED = 1;
export const SKIPPED = 0;
export const ACQUIRED = 1;
export const RENEWED = 2;
export const HELD = -1;

/** Item kind of a run's first call (proto ITEM_KIND_START): the only kind throttle applies to. */
export const KIND_START = 1;

/** The keys and args one new item adds to an enqueue or complete call. */
export function itemLayout(
  keys: ShardKeys,
  item: ItemInput,
): { keys: string[]; args: Array<string | number> } {
  const isStart = item.kind === KIND_START;
  const pid = partitionOf(item.environmentId, item.functionId, item.flow, isStart);
  const shiftMs = item.flow ? item.flow.priorityS * 1000 : 0;
  const body: ItemBody = {
    run: item.runId,
    acct: item.accountId,
    env: item.environmentId,
    fn: item.functionId,
    pid,
    kind: item.kind,
    pl: item.payload,
  };
  if (item.traceParent) body.tp = item.traceParent;
  return {
    keys: [keys.seen(item.id), keys.partition(item.accountId, pid), keys.account(item.accountId)],
    args: [
      item.id,
      pid,
      item.accountId,
      item.runAtMs,
      item.delayMs,
      item.attempt,
      item.runStartedAtMs ?? 0,
      shiftMs,
      JSON.stringify(body),
    ],
  };
}

/** The concurrency sets (keys of the set and of its blocked list) a partition's items count against. */
function setKeys(keys: ShardKeys, accountId: string, pid: string): Array<{ set: string; blocked: string }> {
  const spec = parsePartition(pid);
  if (!spec) return [];
  return spec.groups.map((g) => {
    const id = concurrencySetId(spec, g);
    return { set: keys.concurrency(accountId, id), blocked: keys.blocked(accountId, id) };
  });
}

function dueChange(shard: number, reply: unknown[], what: string): DueChange {
  return {
    shard,
    nowMs: asInt(reply[0], what),
    beforeMs: asInt(reply[1], what),
    afterMs: asInt(reply[2], what),
  };
}

/** Decodes the `{ nowMs, dueBeforeMs, dueAfterMs, { result... } }` reply of a mutating script. */
export function mutation(shard: number, reply: unknown, what: string): MutationResult {
  const list = asList(reply, what);
  return { codes: asInts(list[3], what), due: dueChange(shard, list, what) };
}

function toLeased(id: string, raw: string): LeasedItem {
  const r = parseRecord(raw);
  return {
    id,
    runId: r.body.run,
    accountId: r.body.acct,
    environmentId: r.body.env,
    functionId: r.body.fn,
    kind: r.body.kind,
    attempt: r.attempt,
    payload: r.body.pl,
    traceParent: r.body.tp ?? "",
    dueMs: r.dueMs,
    generation: r.generation,
    leaseExpiresAtMs: r.leaseExpiresAtMs,
    partitionId: r.body.pid,
    releases: r.releases,
  };
}

/** A partition to claim from; `limits` = its function's synced limits (absent = none). */
export interface ClaimPartition {
  pid: string;
  cap: number;
  limits?: FunctionLimits | null | undefined;
}

/** How long a paused function's partition is pushed back before claim looks again (resume wakes it). */
export const PAUSED_RECHECK_MS = 60_000;

/** Leases due items of one account (claim.lua); throws NotOwnerError for a stale token. */
export async function claimItems(
  s: Scripts,
  keys: ShardKeys,
  req: {
    token: string;
    leaseMs: number;
    maxDeliveries: number;
    accountId: string;
    partitions: ClaimPartition[];
    maxItems: number;
  },
): Promise<ClaimResult> {
  const acct = req.accountId;
  const k = [
    keys.items,
    keys.leased,
    keys.owner,
    keys.accounts,
    keys.dlq,
    keys.account(acct),
    keys.forced,
    keys.paused,
  ];
  const a: Array<string | number> = [
    s.now(),
    req.token,
    req.leaseMs,
    req.maxDeliveries,
    req.maxItems,
    acct,
    PAUSED_RECHECK_MS,
  ];
  for (const p of req.partitions) {
    const spec: PartitionSpec = parsePartition(p.pid) ?? {
      environmentId: "",
      functionId: "",
      groups: [],
      throttle: null,
    };
    const lim = claimLimits(spec, p.limits ?? null);
    k.push(keys.partition(acct, p.pid), keys.pausedPartitions(acct, spec.environmentId, spec.functionId));
    a.push(p.pid, p.cap, pausedMember(acct, spec.environmentId, spec.functionId), spec.groups.length);
    spec.groups.forEach((g, i) => {
      const id = concurrencySetId(spec, g);
      k.push(keys.concurrency(acct, id), keys.blocked(acct, id));
      a.push(lim.concurrency[i] ?? 0);
    });
    const t = spec.throttle && lim.throttle;
    k.push(
      t && spec.throttle
        ? keys.throttle(acct, spec.environmentId, spec.functionId, spec.throttle.keyHash)
        : keys.placeholder,
    );
    a.push(t ? t.limit : 0, t ? t.periodMs : 0, t ? t.burst : 0);
  }
  const reply = await s.run("claim", k, a);
  const list = asList(reply, "claim");
  return {
    nowMs: asInt(list[0], "claim"),
    dueMs: asInt(list[1], "claim"),
    leased: leasedPairs(asStrings(list[2], "claim")),
    deadLettered: asStrings(list[3], "claim"),
  };
}

function leasedPairs(flat: string[]): LeasedItem[] {
  const out: LeasedItem[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push(toLeased(flat[i] as string, flat[i + 1] as string));
  return out;
}

/** Extends live leases (extend.lua); results: the new expiry, STALE or EXPIRED. */
export async function extendLeases(
  s: Scripts,
  keys: ShardKeys,
  leaseMs: number,
  leases: Array<{ itemId: string; generation: number; accountId: string; pid: string }>,
): Promise<{ nowMs: number; results: number[] }> {
  const k = [keys.items, keys.leased];
  const a: Array<string | number> = [s.now(), leaseMs, leases.length];
  for (const l of leases) {
    const sets = setKeys(keys, l.accountId, l.pid);
    a.push(l.itemId, l.generation, sets.length);
    for (const set of sets) k.push(set.set);
  }
  const list = asList(await s.run("extend", k, a), "extend");
  return { nowMs: asInt(list[0], "extend"), results: asInts(list[1], "extend") };
}

/** Completes leased items and enqueues their next items (complete.lua); OK, ALREADY or STALE. */
/** The next item a completion may hand off: the first due now, of the completed item's partition. */
function handOffCandidate(pid: string, next: ItemInput[]): number {
  return next.findIndex(
    (n) =>
      n.runAtMs <= 0 &&
      n.delayMs <= 0 &&
      partitionOf(n.environmentId, n.functionId, n.flow, n.kind === KIND_START) === pid,
  );
}

/** A completion's or enqueue's outcome codes, and the items handed off (by op or item index). */
export interface HandOffResult extends MutationResult {
  handedOff: Map<number, LeasedItem>;
}

/**
 * Acks leased items and enqueues their next items (complete.lua); codes OK, ALREADY, STALE or
 * WRONG_PARTITION. A completion with `handOff` leases its candidate next item at once (for
 * `leaseMs`) when the script allows it; see complete.lua.
 */
export async function completeItems(
  s: Scripts,
  keys: ShardKeys,
  seenTtlMs: number,
  leaseMs: number,
  completions: Array<{
    itemId: string;
    generation: number;
    accountId: string;
    pid: string;
    next: ItemInput[];
    handOff?: boolean | undefined;
  }>,
): Promise<HandOffResult> {
  const k = [keys.items, keys.leased, keys.seq, keys.accounts, keys.forced, keys.paused];
  const a: Array<string | number> = [s.now(), seenTtlMs, completions.length, leaseMs];
  for (const c of completions) {
    const sets = setKeys(keys, c.accountId, c.pid);
    k.push(keys.seen(c.itemId), keys.account(c.accountId));
    for (const set of sets) k.push(set.set, set.blocked);
    const h = c.handOff && c.pid ? handOffCandidate(c.pid, c.next) : -1;
    const target = c.next[h];
    const member = target ? pausedMember(target.accountId, target.environmentId, target.functionId) : "";
    a.push(c.itemId, c.generation, c.pid, c.accountId, sets.length, c.next.length, h + 1, member);
    for (const item of c.next) {
      const l = itemLayout(keys, item);
      k.push(...l.keys);
      a.push(...l.args);
    }
  }
  return handedOffReply(keys.shard, await s.run("complete", k, a), "complete");
}

/**
 * Decodes a mutation's reply whose fifth element lists the items leased at once, `{ i, itemId,
 * record, ... }` with `i` the 1-based op (complete.lua) or item (enqueue.lua) index.
 */
export function handedOffReply(shard: number, raw: unknown, what: string): HandOffResult {
  const reply = asList(raw, what);
  const handed = asList(reply[4] ?? [], what);
  const handedOff = new Map<number, LeasedItem>();
  for (let i = 0; i + 2 < handed.length; i += 3) {
    handedOff.set(asInt(handed[i], what) - 1, toLeased(String(handed[i + 1]), String(handed[i + 2])));
  }
  return { ...mutation(shard, reply, what), handedOff };
}

/**
 * Puts leased items back to ready (retry.lua); OK, STALE or WRONG_PARTITION. `runAtMs` 0 = now,
 * -1 = at the item's original score.
 */
export async function retryItems(
  s: Scripts,
  keys: ShardKeys,
  ops: Array<{
    itemId: string;
    generation: number;
    accountId: string;
    pid: string;
    runAtMs: number;
    attempt: number;
  }>,
): Promise<MutationResult> {
  const k = [keys.items, keys.leased, keys.seq, keys.accounts, keys.forced];
  const a: Array<string | number> = [s.now(), ops.length];
  for (const o of ops) {
    const sets = setKeys(keys, o.accountId, o.pid);
    k.push(keys.partition(o.accountId, o.pid), keys.account(o.accountId));
    for (const set of sets) k.push(set.set, set.blocked);
    a.push(o.itemId, o.generation, o.pid, o.runAtMs, o.attempt, sets.length);
  }
  return mutation(keys.shard, await s.run("retry", k, a), "retry");
}

/**
 * Deletes ready items (remove.lua) and tombstones them for `seenTtlMs`; per item REMOVED (1),
 * ABSENT (0), LEASED (-1) or WRONG_PARTITION (-2).
 */
export async function removeItems(
  s: Scripts,
  keys: ShardKeys,
  seenTtlMs: number,
  items: Array<{ itemId: string; accountId: string; pid: string }>,
): Promise<MutationResult> {
  const k = [keys.items, keys.accounts, keys.forced];
  const a: Array<string | number> = [s.now(), seenTtlMs, items.length];
  for (const i of items) {
    k.push(keys.partition(i.accountId, i.pid), keys.account(i.accountId), keys.seen(i.itemId));
    a.push(i.itemId, i.accountId, i.pid);
  }
  return mutation(keys.shard, await s.run("remove", k, a), "remove");
}

/** Lists expired leases of a shard (expired.lua, read-only). */
export async function expiredLeases(
  s: Scripts,
  keys: ShardKeys,
  limit: number,
): Promise<{ nowMs: number; nextExpiryMs: number; leases: ExpiredLease[] }> {
  const list = asList(await s.run("expired", [keys.items, keys.leased], [s.now(), limit]), "expired");
  const flat = asStrings(list[2], "expired");
  const leases: ExpiredLease[] = [];
  for (let i = 0; i + 2 < flat.length; i += 3) {
    leases.push({ itemId: flat[i] as string, accountId: flat[i + 1] as string, pid: flat[i + 2] as string });
  }
  return { nowMs: asInt(list[0], "expired"), nextExpiryMs: asInt(list[1], "expired"), leases };
}

/** Returns expired leases to ready (reclaim.lua); RECLAIMED, SKIPPED or WRONG_PARTITION. */
export async function reclaimLeases(
  s: Scripts,
  keys: ShardKeys,
  token: string,
  leases: ExpiredLease[],
): Promise<MutationResult> {
  const k = [keys.items, keys.leased, keys.owner, keys.accounts, keys.forced];
  const a: Array<string | number> = [s.now(), token, leases.length];
  for (const l of leases) {
    const known = l.accountId !== "" && l.pid !== "";
    k.push(
      known ? keys.partition(l.accountId, l.pid) : keys.placeholder,
      known ? keys.account(l.accountId) : keys.placeholder,
    );
    a.push(l.itemId, l.pid);
  }
  return mutation(keys.shard, await s.run("reclaim", k, a), "reclaim");
}

/** Takes or renews a shard's owner lease (owner-acquire.lua): ACQUIRED, RENEWED or HELD. */
export async function acquireOwner(
  s: Scripts,
  keys: ShardKeys,
  token: string,
  ttlMs: number,
): Promise<number> {
  return ownerCode(await s.run("owner-acquire", [keys.owner], [token, ttlMs]));
}

/** acquireOwner for many shards in one round trip (an ownership round): a code per shard, in order. */
export async function acquireOwners(
  s: Scripts,
  shards: readonly ShardKeys[],
  token: string,
  ttlMs: number,
): Promise<number[]> {
  const replies = await s.runMany(
    shards.map((keys) => ({ name: "owner-acquire" as const, keys: [keys.owner], args: [token, ttlMs] })),
  );
  return replies.map(ownerCode);
}

function ownerCode(reply: unknown): number {
  const code = asInt(reply, "owner-acquire");
  if (code !== ACQUIRED && code !== RENEWED && code !== HELD) {
    throw new ScriptReplyError(`owner-acquire: unexpected code ${code}`);
  }
  return code;
}

/** Gives a shard's owner lease up (owner-release.lua): true if this token held it. */
export async function releaseOwner(s: Scripts, keys: ShardKeys, token: string): Promise<boolean> {
  return asInt(await s.run("owner-release", [keys.owner], [token]), "owner-release") === 1;
}

/** Gives the owner leases of many shards up in one round trip. */
export async function releaseOwners(s: Scripts, shards: readonly ShardKeys[], token: string): Promise<void> {
  await s.runMany(
    shards.map((keys) => ({ name: "owner-release" as const, keys: [keys.owner], args: [token] })),
  );
}
