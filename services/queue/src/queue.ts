// The queue's operations across shards: validates input, routes each item or lease to its
// account's shard (shardOf), splits work into bounded script calls, and reports every change of
// a shard's earliest due time to a listener (the scheduler wakes on it, or another replica is
// told over pub/sub). Any replica may run these; only claim and reclaim need the shard's owner.
import { TooLargeError, ValidationError } from "@stepline/internal/errors";
import { shardOf, VIRTUAL_SHARDS } from "@stepline/internal/shards";
import type { ShardKeys } from "./keys.js";
import { shardKeys } from "./keys.js";
import { perShard } from "./per-shard.js";
import type { FunctionRef, LeaseRef, OpOutcome, QueueOptions, RemoveOutcome } from "./queue-types.js";
import type { Scripts } from "./scripts.js";
import { accountHeads, itemPartitions, readyPartitions, shardHeads } from "./shard-reads.js";
import type {
  ClaimPartition,
  ClaimResult,
  DueChange,
  ExpiredLease,
  ItemInput,
  LeasedItem,
  MutationResult,
} from "./store.js";
import {
  claimItems,
  completeItems,
  ENQUEUED,
  expiredLeases,
  extendLeases,
  OK,
  RECLAIMED,
  reclaimLeases,
  removeItems,
  retryItems,
} from "./store.js";
import { type DeadLetterView, redriveItems, shardDeadLetters } from "./store-dead-letters.js";
import { enqueueItems, mayHandOff, newlyReadyPartition } from "./store-enqueue.js";
import { pausedFunctions, pauseFunction, resumeFunction } from "./store-pauses.js";
import { MAX_DUE_MS, screen, validateFunctionRef, validateItem, validateLease } from "./validate.js";

/**
 * Items one script call adds (enqueue, and complete's next items), and leases or completions per
 * call of the other scripts: bounds each script's run time.
 */
const ITEMS_PER_CALL = 256;
const OPS_PER_CALL = 128;
const MAX_BATCH = 10_000;
const MAX_NEXT = 100;
const MAX_DEAD_LETTERS = 1_000;

export type { FunctionRef, LeaseRef, OpOutcome, QueueOptions, RemoveOutcome } from "./queue-types.js";
export { SCORE_SCALE } from "./shard-reads.js";

const DONE: OpOutcome = { ok: true, leaseExpiresAtMs: 0 };
const LOST: OpOutcome = { ok: false, leaseExpiresAtMs: 0 };

export class Queue {
  readonly shards: number;
  private readonly keyCache: ShardKeys[];
  /** shardOf hashes with SHA-256; accounts repeat on every op, so remember the answer. */
  private readonly shardCache = new Map<string, number>();

  constructor(
    private readonly scripts: Scripts,
    readonly options: QueueOptions,
    private readonly onDue: (change: DueChange) => void = () => {},
  ) {
    this.shards = options.shards ?? VIRTUAL_SHARDS;
    this.keyCache = Array.from({ length: this.shards }, (_, i) => shardKeys(options.namespace, i));
  }

  /** The keys of a shard. */
  keys(shard: number): ShardKeys {
    const k = this.keyCache[shard];
    if (!k) throw new Error(`no shard ${shard}`);
    return k;
  }

  /** The shard an account's items live in. */
  shardOf(accountId: string): number {
    let shard = this.shardCache.get(accountId);
    if (shard === undefined) {
      if (this.shardCache.size >= 100_000) this.shardCache.clear();
      shard = shardOf(accountId, this.shards);
      this.shardCache.set(accountId, shard);
    }
    return shard;
  }

  /** Enqueues items (idempotent by id); one status per item, in order. */
  async enqueue(items: ItemInput[]): Promise<Array<"enqueued" | "exists">> {
    if (items.length > MAX_BATCH) throw new TooLargeError(`at most ${MAX_BATCH} items per call`);
    items.forEach(validateItem);
    const out = new Array<"enqueued" | "exists">(items.length);
    await this.add(items, new Set(), (index, code) => {
      out[index] = code === ENQUEUED ? "enqueued" : "exists";
    });
    return out;
  }

  /**
   * Enqueues new runs' start items as `enqueue` does, leasing up to `maxHandOffs` of them to the
   * caller at once (a start hand-off, enqueue.lua: due now, no flow control, function not
   * paused, nothing of the shard due). An invalid item is refused on its own (`invalid`).
   * `enqueued` counts the items queued (neither handed off nor there already).
   */
  async start(items: ItemInput[], maxHandOffs: number): Promise<{ outcomes: OpOutcome[]; enqueued: number }> {
    if (items.length > MAX_BATCH) throw new TooLargeError(`at most ${MAX_BATCH} items per call`);
    const out = new Array<OpOutcome>(items.length);
    let enqueued = 0;
    const valid = screen(items, out, validateItem);
    const handOffs = new Set(
      valid
        .filter((v) => mayHandOff(v.op))
        .slice(0, maxHandOffs)
        .map((v) => v.index),
    );
    await this.add(
      valid.map((v) => v.op),
      new Set(valid.flatMap((v, i) => (handOffs.has(v.index) ? [i] : []))),
      (index, code, handedOff) => {
        const original = valid[index]?.index ?? 0;
        out[original] = handedOff ? { ...DONE, handedOff } : DONE;
        if (code === ENQUEUED) enqueued++;
      },
    );
    return { outcomes: out, enqueued };
  }

  /** Enqueue's script calls, per shard; `handOffs` = indexes of `items` to hand off if they can be. */
  private add(
    items: ItemInput[],
    handOffs: Set<number>,
    onResult: (index: number, code: number, handedOff?: LeasedItem) => void,
  ): Promise<void> {
    return this.perShard(
      items,
      (i) => i.accountId,
      ITEMS_PER_CALL,
      async (shard, batch) => {
        const values = batch.map((b) => b.value);
        const indexes = batch.flatMap((b, j) => (handOffs.has(b.index) ? [j] : []));
        const handOff = indexes.length > 0 ? { indexes, leaseMs: this.options.leaseMs } : undefined;
        const r = await enqueueItems(this.scripts, this.keys(shard), values, handOff);
        this.onDue({ ...r.due, ready: newlyReadyPartition(r.due, values, r.codes) });
        r.codes.forEach((c, j) => {
          onResult(batch[j]?.index ?? 0, c, r.handedOff.get(j));
        });
      },
    );
  }

  /**
   * Completes leases, enqueuing each one's next items atomically with it (complete.lua, and its
   * hand-off, asked for with `handOff`). An invalid op is refused on its own (`invalid`); the
   * others still run.
   */
  async complete(
    ops: Array<{ lease: LeaseRef; next: ItemInput[]; handOff?: boolean | undefined }>,
  ): Promise<OpOutcome[]> {
    const out = new Array<OpOutcome>(ops.length);
    const valid = screen(ops, out, (op) => {
      validateLease(op.lease);
      if (op.next.length > MAX_NEXT) throw new TooLargeError(`at most ${MAX_NEXT} next items per completion`);
      for (const n of op.next) {
        validateItem(n);
        // Atomic only inside one shard, and the shard follows the account.
        if (this.shardOf(n.accountId) !== this.shardOf(op.lease.accountId)) {
          throw new ValidationError(`next item ${n.id} belongs to another account's shard`);
        }
      }
    });
    await this.perShard(
      valid,
      (o) => o.op.lease.accountId,
      OPS_PER_CALL,
      async (shard, batch) => {
        const places = await this.places(
          shard,
          batch.map((b) => b.value.op.lease),
        );
        const comps = batch.map((b, j) => ({
          itemId: b.value.op.lease.itemId,
          generation: b.value.op.lease.generation,
          accountId: b.value.op.lease.accountId,
          // An item that is gone gets no pid: the script answers ALREADY or STALE without it.
          pid: places[j]?.pid ?? "",
          next: b.value.op.next,
          handOff: b.value.op.handOff,
        }));
        const r = await completeItems(
          this.scripts,
          this.keys(shard),
          this.options.seenTtlMs,
          this.options.leaseMs,
          comps,
        );
        this.onDue(r.due);
        r.codes.forEach((c, j) => {
          const handedOff = r.handedOff.get(j);
          out[batch[j]?.value.index ?? 0] = c <= 0 ? LOST : handedOff ? { ...DONE, handedOff } : DONE;
        });
      },
      (o) => o.op.next.length,
    );
    return out;
  }

  /**
   * Puts leased items back to ready at max(now, runAtMs) (0 = now, -1 = their original place)
   * with `attempt` as the next delivery's attempt number.
   */
  async retry(ops: Array<{ lease: LeaseRef; runAtMs: number; attempt: number }>): Promise<OpOutcome[]> {
    const out = new Array<OpOutcome>(ops.length).fill(LOST);
    const valid = screen(ops, out, (op) => {
      validateLease(op.lease);
      if (op.runAtMs > MAX_DUE_MS)
        throw new ValidationError(`retry of ${op.lease.itemId}: run_at_ms too late`);
      if (!Number.isSafeInteger(op.attempt) || op.attempt < 0)
        throw new ValidationError(`retry of ${op.lease.itemId}: attempt must be >= 0`);
    });
    await this.perShard(
      valid,
      (o) => o.op.lease.accountId,
      OPS_PER_CALL,
      async (shard, batch) => {
        const keys = this.keys(shard);
        const parts = await this.places(
          shard,
          batch.map((b) => b.value.op.lease),
        );
        const known = batch.flatMap((b, j) => {
          const p = parts[j];
          return p ? [{ index: b.value.index, op: b.value.op, pid: p.pid, accountId: p.accountId }] : [];
        });
        if (known.length === 0) return;
        const r = await retryItems(
          this.scripts,
          keys,
          known.map((k) => ({
            itemId: k.op.lease.itemId,
            generation: k.op.lease.generation,
            accountId: k.accountId,
            pid: k.pid,
            runAtMs: k.op.runAtMs,
            attempt: k.op.attempt,
          })),
        );
        this.onDue(r.due);
        r.codes.forEach((c, j) => {
          out[known[j]?.index ?? 0] = c === OK ? DONE : LOST;
        });
      },
    );
    return out;
  }

  /**
   * Deletes queued items (not leased ones) by id: a cancelled run's sleeps and timeouts.
   * Idempotent; an id is then refused by enqueue for the tombstone TTL.
   */
  async remove(items: Array<{ itemId: string; accountId: string }>): Promise<RemoveOutcome[]> {
    const codes = await this.perItem(items, (keys, known) =>
      removeItems(this.scripts, keys, this.options.seenTtlMs, known),
    );
    return codes.map((c) => (c === 1 ? "removed" : c === -1 ? "leased" : "absent"));
  }

  /**
   * Dead-lettered items, oldest first across shards (of one account when `accountId` is not ""),
   * at most `limit`, and whether more match.
   */
  async deadLetters(accountId: string, limit: number): Promise<{ items: DeadLetterView[]; more: boolean }> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DEAD_LETTERS)
      throw new ValidationError(`limit must be 1..${MAX_DEAD_LETTERS}`);
    const shards = accountId ? [this.shardOf(accountId)] : [...this.keyCache.keys()];
    const per = await Promise.all(
      shards.map((sh) => shardDeadLetters(this.scripts, this.keys(sh), accountId, limit)),
    );
    const all = per.flatMap((p) => p.items).sort((a, b) => a.deadLetteredAtMs - b.deadLetteredAtMs);
    return { items: all.slice(0, limit), more: all.length > limit || per.some((p) => p.more) };
  }

  /** Puts dead-lettered items back in line, due now (redrive.lua); true for each one redriven. */
  async redrive(items: Array<{ itemId: string; accountId: string }>): Promise<boolean[]> {
    const codes = await this.perItem(items, (keys, known) => redriveItems(this.scripts, keys, known));
    return codes.map((c) => c === 1);
  }

  /**
   * Runs a per-item script over items named by id and account, with each one's partition read
   * from its record; an item of another account is left alone (ids are not secrets, accounts
   * are). One code per item, 0 for those not found.
   */
  private async perItem(
    items: Array<{ itemId: string; accountId: string }>,
    run: (
      keys: ShardKeys,
      known: Array<{ itemId: string; accountId: string; pid: string }>,
    ) => Promise<MutationResult>,
  ): Promise<number[]> {
    if (items.length > MAX_BATCH) throw new TooLargeError(`at most ${MAX_BATCH} items per call`);
    for (const i of items) {
      if (!i.itemId || !i.accountId) throw new ValidationError("every item needs item_id and account_id");
    }
    const out = new Array<number>(items.length).fill(0);
    await this.perShard(
      items,
      (i) => i.accountId,
      OPS_PER_CALL,
      async (shard, batch) => {
        const keys = this.keys(shard);
        const parts = await itemPartitions(
          this.scripts.redis,
          keys,
          batch.map((b) => b.value.itemId),
        );
        const known = batch.flatMap((b, j) => {
          const p = parts[j];
          return p && p.accountId === b.value.accountId
            ? [{ index: b.index, itemId: b.value.itemId, ...p }]
            : [];
        });
        if (known.length === 0) return;
        const r = await run(keys, known);
        this.onDue(r.due);
        r.codes.forEach((c, j) => {
          out[known[j]?.index ?? 0] = c;
        });
      },
    );
    return out;
  }

  /** Hands leased items back without counting an attempt, keeping their place in line. */
  release(items: LeasedItem[]): Promise<OpOutcome[]> {
    return this.retry(
      items.map((i) => ({
        lease: { itemId: i.id, accountId: i.accountId, generation: i.generation },
        runAtMs: -1,
        attempt: i.attempt,
      })),
    );
  }

  /** Extends live leases; a lease that is stale or already expired is refused. */
  async extend(leases: LeaseRef[]): Promise<OpOutcome[]> {
    const out = new Array<OpOutcome>(leases.length);
    const valid = screen(leases, out, validateLease);
    await this.perShard(
      valid,
      (l) => l.op.accountId,
      OPS_PER_CALL,
      async (shard, batch) => {
        const places = await this.places(
          shard,
          batch.map((b) => b.value.op),
        );
        const r = await extendLeases(
          this.scripts,
          this.keys(shard),
          this.options.leaseMs,
          batch.map((b, j) => ({ ...b.value.op, pid: places[j]?.pid ?? "" })),
        );
        r.results.forEach((expiry, j) => {
          out[batch[j]?.value.index ?? 0] = expiry > 0 ? { ok: true, leaseExpiresAtMs: expiry } : LOST;
        });
      },
    );
    return out;
  }

  /** Leases up to `maxItems` due items of one account (the owner only), within each partition's limits. */
  claim(
    shard: number,
    token: string,
    accountId: string,
    partitions: ClaimPartition[],
    maxItems: number,
  ): Promise<ClaimResult> {
    return claimItems(this.scripts, this.keys(shard), {
      token,
      leaseMs: this.options.leaseMs,
      maxDeliveries: this.options.maxDeliveries,
      accountId,
      partitions,
      maxItems,
    });
  }

  /** Pauses a function: its items stay queued and none is handed out. True when it was not paused. */
  async pause(fn: FunctionRef): Promise<boolean> {
    validateFunctionRef(fn);
    return pauseFunction(this.scripts, this.keys(this.shardOf(fn.accountId)), fn);
  }

  /** Resumes a paused function: its items are handed out again, in order. True when it was paused. */
  async resume(fn: FunctionRef): Promise<boolean> {
    validateFunctionRef(fn);
    const shard = this.shardOf(fn.accountId);
    const r = await resumeFunction(this.scripts, this.keys(shard), fn);
    if (r.changed) this.onDue({ shard, nowMs: r.nowMs, beforeMs: -1, afterMs: r.nowMs });
    return r.changed;
  }

  /** Which functions are paused, in order. */
  async paused(fns: FunctionRef[]): Promise<boolean[]> {
    if (fns.length > MAX_BATCH) throw new TooLargeError(`at most ${MAX_BATCH} functions per call`);
    fns.forEach(validateFunctionRef);
    const out = new Array<boolean>(fns.length).fill(false);
    await this.perShard(
      fns,
      (f) => f.accountId,
      MAX_BATCH,
      async (shard, batch) => {
        const flags = await pausedFunctions(
          this.scripts,
          this.keys(shard),
          batch.map((b) => b.value),
        );
        flags.forEach((f, j) => {
          out[batch[j]?.index ?? 0] = f;
        });
      },
    );
    return out;
  }

  /** Lists expired leases of a shard (read-only). */
  expired(shard: number, limit: number) {
    return expiredLeases(this.scripts, this.keys(shard), limit);
  }

  /** Returns expired leases to ready (the owner only); the number reclaimed. */
  async reclaim(shard: number, token: string, leases: ExpiredLease[]): Promise<number> {
    if (leases.length === 0) return 0;
    const r = await reclaimLeases(this.scripts, this.keys(shard), token, leases);
    this.onDue(r.due);
    return r.codes.filter((c) => c === RECLAIMED).length;
  }

  /** Accounts of a shard in due order, with their scores (a window of `limit` from `offset`). */
  accountHeads(shard: number, offset: number, limit: number): Promise<Array<{ id: string; score: number }>> {
    return accountHeads(this.scripts.redis, this.keys(shard), offset, limit);
  }

  /** For each account, the ids of its partitions with items due by `maxScore` (earliest first). */
  readyPartitions(shard: number, accountIds: string[], maxScore: number, limit: number): Promise<string[][]> {
    return readyPartitions(this.scripts.redis, this.keys(shard), accountIds, maxScore, limit);
  }

  /** Each shard's earliest due time and earliest lease expiry (epoch ms; Infinity = none). */
  heads(shards: number[]): Promise<Array<{ dueMs: number; expiryMs: number }>> {
    return shardHeads(
      this.scripts.redis,
      shards.map((shard) => this.keys(shard)),
    );
  }

  /**
   * Where each leased item lives (its account and partition): from the lease when it names its
   * partition, else read from the item (null when the item is gone).
   */
  private async places(
    shard: number,
    leases: LeaseRef[],
  ): Promise<Array<{ accountId: string; pid: string } | null>> {
    const unknown = leases.flatMap((l, i) => (l.partitionId ? [] : [i]));
    const read =
      unknown.length === 0
        ? []
        : await itemPartitions(
            this.scripts.redis,
            this.keys(shard),
            unknown.map((i) => leases[i]?.itemId ?? ""),
          );
    const out = leases.map((l) => (l.partitionId ? { accountId: l.accountId, pid: l.partitionId } : null));
    unknown.forEach((i, j) => {
      out[i] = read[j] ?? null;
    });
    return out;
  }

  /** `perShard` (per-shard.ts) over this queue's shards, at most ITEMS_PER_CALL items per call. */
  private perShard<T>(
    values: T[],
    accountOf: (v: T) => string,
    chunk: number,
    fn: (shard: number, batch: Array<{ index: number; value: T }>) => Promise<void>,
    itemsOf?: (v: T) => number,
  ): Promise<void> {
    return perShard(
      values,
      (v) => this.shardOf(accountOf(v)),
      { chunk, itemsPerCall: ITEMS_PER_CALL },
      fn,
      itemsOf,
    );
  }
}
