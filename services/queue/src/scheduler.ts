// The owner's scheduling loop. For the shards this replica owns it keeps, in memory, each shard's
// next due time and next lease expiry (claim, enqueue, complete, retry and reclaim report them)
// and sleeps until the earliest one that matters: an idle queue costs one pipelined sweep every
// few seconds, not a poll per shard. It claims only while executors have credits, walks due
// shards round-robin, picks accounts by deficit round robin and partitions by rotation, hands
// what it leased to the executor streams, and reclaims expired leases. A partition that an enqueue
// on this replica made due on a shard with nothing else due is claimed at once (the fast path):
// one Redis round trip from enqueue to hand-out instead of three.
import type { Clock } from "@stepline/internal/clock";
import { systemClock } from "@stepline/internal/clock";
import type { Logger } from "@stepline/internal/log";
import type { AccountShare } from "./fairness.js";
import { AccountDrr, partitionShares } from "./fairness.js";
import type { FunctionKey, FunctionLimits, LimitsCache } from "./limits.js";
import { cacheKey, needsLimits } from "./limits.js";
import { deadLetteredTotal, leasedTotal, reclaimedTotal } from "./metrics.js";
import { parsePartition } from "./partitions.js";
import type { Queue } from "./queue.js";
import { SCORE_SCALE } from "./queue.js";
import { NotOwnerError } from "./scripts.js";
import type { ClaimResult, LeasedItem, ReadyPartition } from "./store.js";

/** Where leased items go: the executor streams and their credits. */
export interface WorkSink {
  /** Items the connected executors can take now. */
  available(): number;
  /** Hands items out; returns those no stream could take (a stream closed meanwhile). */
  deliver(items: LeasedItem[]): LeasedItem[];
}

export interface SchedulerOptions {
  /** This replica's owner token (claim and reclaim are fenced by it). */
  token: string;
  /** Items per claim call (per account). */
  claimBatch: number;
  /** Safety sweep period: re-reads every owned shard's heads in case a wake-up was missed. */
  sweepMs: number;
  leaseMs: number;
  /** Ready accounts read per round (a rotating window when there are more). */
  accountWindow?: number;
  /** Ready partitions of one account considered per claim. */
  partitionWindow?: number;
  /** Expired leases reclaimed per call. */
  reclaimBatch?: number;
}

interface ShardState {
  /** Earliest due time (Redis ms; Infinity = nothing queued). */
  due: number;
  /** Earliest lease expiry (Redis ms; Infinity = no leases). */
  expiry: number;
  /** Lowest due time noted while a read of this shard was in flight (so it is not lost). */
  noted: number;
  /** Offset of the ready-accounts window. */
  offset: number;
  drr: AccountDrr;
  turn: number;
  /** The enqueue fast path's partition for the next round (see noteDue); none = a full round. */
  ready?: ReadyPartition | undefined;
}

const IDLE_BACKOFF_MS = 20;
const ERROR_BACKOFF_MS = 500;

export class Scheduler {
  private readonly shards = new Map<number, ShardState>();
  private readonly accountWindow: number;
  private readonly partitionWindow: number;
  private readonly reclaimBatch: number;
  /** Redis time minus local time, from the scripts' replies. */
  private clockOffset = 0;
  private nextSweepAt = 0;
  private sleepingUntil = Infinity;
  private wakeUp: (() => void) | undefined;
  private stopped = true;
  private running: Promise<void> | undefined;
  private rr = 0;

  constructor(
    private readonly queue: Queue,
    private readonly sink: WorkSink,
    private readonly options: SchedulerOptions,
    private readonly log: Logger,
    /** The functions' concurrency and throttle limits. */
    private readonly limits: LimitsCache,
    private readonly clock: Clock = systemClock,
  ) {
    this.accountWindow = options.accountWindow ?? 100;
    this.partitionWindow = options.partitionWindow ?? 16;
    this.reclaimBatch = options.reclaimBatch ?? 100;
  }

  /** Starts the loop. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.running = this.loop();
  }

  /** Stops the loop after the round in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.running;
  }

  /** A shard became ours: look at it at once. */
  adopt(shard: number): void {
    if (this.shards.has(shard)) return;
    const drr = new AccountDrr(this.options.claimBatch);
    this.shards.set(shard, { due: -Infinity, expiry: -Infinity, noted: Infinity, offset: 0, drr, turn: 0 });
    this.wake();
  }

  /** A shard is no longer ours. */
  drop(shard: number): void {
    this.shards.delete(shard);
  }

  /** The shards this scheduler works on. */
  owned(): number[] {
    return [...this.shards.keys()];
  }

  /**
   * Notes that `shard` has work due at `dueMs` (Redis ms): from a local op or a wake message.
   * `ready` (a local enqueue, DueChange.ready) names the one partition it made due on a shard with
   * nothing else due: the next round claims it straight away, unless other due work was noted
   * meanwhile.
   */
  noteDue(shard: number, dueMs: number, ready?: ReadyPartition): void {
    const st = this.shards.get(shard);
    if (!st || dueMs < 0) return;
    const alone = st.ready
      ? st.ready.accountId === ready?.accountId && st.ready.pid === ready.pid
      : st.due > this.now();
    st.ready = ready && alone ? ready : undefined;
    st.noted = Math.min(st.noted, dueMs);
    if (dueMs < st.due) {
      st.due = dueMs;
      if (dueMs <= this.sleepingUntil && this.sink.available() > 0) this.wake();
    }
  }

  /** Corrects the local estimate of Redis time. */
  noteNow(redisNowMs: number): void {
    this.clockOffset = redisNowMs - this.clock.now();
  }

  /** Wakes the loop (credits arrived, a shard was adopted). */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private now(): number {
    return this.clock.now() + this.clockOffset;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let worked: boolean;
      try {
        worked = await this.step();
      } catch (err) {
        this.log.error({ err }, "scheduler round failed");
        await this.sleep(this.now() + ERROR_BACKOFF_MS);
        continue;
      }
      if (!worked && !this.stopped) await this.sleep(this.nextWakeAt());
    }
  }

  /** One pass: sweep if due, reclaim expired leases, claim on due shards. True if it did anything. */
  private async step(): Promise<boolean> {
    let worked = false;
    if (this.now() >= this.nextSweepAt) {
      await this.sweep();
      worked = true;
    }
    for (const [shard, st] of this.shards) {
      if (st.expiry <= this.now()) {
        await this.reclaim(shard, st);
        worked = true;
      }
    }
    if (this.sink.available() <= 0) return worked;
    const now = this.now();
    const due = [...this.shards].filter(([, st]) => st.due <= now);
    const n = due.length;
    const start = n === 0 ? 0 : this.rr++ % n;
    for (let i = 0; i < n && !this.stopped; i++) {
      if (this.sink.available() <= 0) break;
      const [shard, st] = due[(start + i) % n] as [number, ShardState];
      await this.claimRound(shard, st);
      worked = true;
    }
    return worked;
  }

  /**
   * Claims for one shard: ready accounts -> DRR shares -> ready partitions -> claims. On the
   * enqueue fast path (a partition became due on a shard with nothing else due) it claims that
   * partition at once, skipping the two reads: one Redis round trip instead of three.
   */
  private async claimRound(shard: number, st: ShardState): Promise<void> {
    const budget = Math.min(this.sink.available(), this.options.claimBatch * 4);
    const now = this.now();
    const maxScore = now * SCORE_SCALE + SCORE_SCALE - 1;
    const fast = st.offset === 0 ? st.ready : undefined;
    st.ready = undefined;
    st.noted = Infinity;
    const round = fast
      ? { shares: st.drr.plan([fast.accountId], budget, this.options.claimBatch), parts: [[fast.pid]] }
      : await this.readyWork(shard, st, budget, maxScore);
    if (!round) return;
    const { shares, parts } = round;
    const limited = await this.withLimits(
      shares.map((s, i) => ({ accountId: s.accountId, pids: parts[i] ?? [] })),
    );
    // Settled one by one: items a claim leased must reach an executor (or go back) even when
    // another claim of the round failed, or they would sit leased until their leases expire.
    const settled = await Promise.allSettled(
      shares.map((s, i) =>
        this.queue.claim(
          shard,
          this.options.token,
          s.accountId,
          partitionShares(limited[i] ?? [], s.count, st.turn++),
          s.count,
        ),
      ),
    );
    const leased: LeasedItem[] = [];
    let last: ClaimResult | undefined;
    let deposed = false;
    let failure: unknown;
    for (const [i, r] of settled.entries()) {
      if (r.status === "rejected") {
        if (r.reason instanceof NotOwnerError) deposed = true;
        else failure ??= r.reason;
        continue;
      }
      last = r.value;
      const share = shares[i];
      if (share) st.drr.charge(share.accountId, share.count, r.value.leased.length);
      leased.push(...r.value.leased);
      if (r.value.deadLettered.length > 0) {
        deadLetteredTotal.inc(r.value.deadLettered.length);
        this.log.warn({ shard, items: r.value.deadLettered }, "dead-lettered items past the delivery limit");
      }
    }
    if (leased.length > 0) {
      leasedTotal.inc(leased.length);
      st.expiry = Math.min(st.expiry, now + this.options.leaseMs);
      // Leased while we owned the shard: the leases are valid whoever owns it now.
      const undelivered = this.sink.deliver(leased);
      if (undelivered.length > 0) await this.queue.release(undelivered);
    }
    if (deposed) {
      this.log.warn({ shard }, "lost ownership of shard while claiming");
      this.drop(shard);
      return;
    }
    if (failure !== undefined) throw failure;
    // Claims on one connection run in order, so the last reply has the latest due time.
    if (last) {
      this.noteNow(last.nowMs);
      st.due = Math.min(last.dueMs < 0 ? Infinity : last.dueMs, st.noted);
    }
    // Due but nothing leasable (e.g. only dead letters): do not spin on it.
    if (leased.length === 0) st.due = Math.max(st.due, now + IDLE_BACKOFF_MS);
  }

  /**
   * The round's DRR shares and each share's ready partitions, read from the shard; undefined when
   * no account is ready (the shard's due time is noted then).
   */
  private async readyWork(
    shard: number,
    st: ShardState,
    budget: number,
    maxScore: number,
  ): Promise<{ shares: AccountShare[]; parts: string[][] } | undefined> {
    const heads = await this.queue.accountHeads(shard, st.offset, this.accountWindow);
    const ready = heads.filter((h) => h.score <= maxScore).map((h) => h.id);
    const windowFull = heads.length === this.accountWindow && ready.length === heads.length;
    if (ready.length === 0) {
      if (st.offset === 0) {
        const head = heads[0];
        st.due = Math.min(head ? Math.floor(head.score / SCORE_SCALE) : Infinity, st.noted);
      }
      st.offset = 0;
      return undefined;
    }
    // More ready accounts than one window: look further along next round so none is left out.
    st.offset = windowFull ? st.offset + this.accountWindow : 0;
    const shares = st.drr.plan(ready, budget, this.options.claimBatch);
    const parts = await this.queue.readyPartitions(
      shard,
      shares.map((s) => s.accountId),
      maxScore,
      this.partitionWindow,
    );
    return { shares, parts };
  }

  /**
   * Each account's ready partitions with their functions' limits. A partition whose limits are
   * unknown (the runner has not answered yet) is left for a later round rather than claimed
   * without them.
   */
  private async withLimits(
    accounts: Array<{ accountId: string; pids: string[] }>,
  ): Promise<Array<Array<{ pid: string; limits: FunctionLimits | null }>>> {
    const wanted: FunctionKey[] = [];
    const specs = accounts.map(({ accountId, pids }) =>
      pids.map((pid) => {
        const spec = parsePartition(pid);
        if (!spec || !needsLimits(spec)) return { pid, key: null };
        const fn = { accountId, environmentId: spec.environmentId, functionId: spec.functionId };
        wanted.push(fn);
        return { pid, key: cacheKey(fn) };
      }),
    );
    const known =
      wanted.length > 0 ? await this.limits.get(wanted) : new Map<string, FunctionLimits | null>();
    return specs.map((list) =>
      list.flatMap(({ pid, key }) => {
        if (key === null) return [{ pid, limits: null }];
        const limits = known.get(key);
        return limits === undefined ? [] : [{ pid, limits }];
      }),
    );
  }

  /** Returns a shard's expired leases to ready and learns its next expiry. */
  private async reclaim(shard: number, st: ShardState): Promise<void> {
    const exp = await this.queue.expired(shard, this.reclaimBatch);
    this.noteNow(exp.nowMs);
    if (exp.leases.length > 0) {
      try {
        const n = await this.queue.reclaim(shard, this.options.token, exp.leases);
        if (n > 0) {
          reclaimedTotal.inc(n);
          this.log.info({ shard, reclaimed: n }, "reclaimed expired leases");
        }
      } catch (err) {
        if (!(err instanceof NotOwnerError)) throw err;
        this.drop(shard);
        return;
      }
    }
    const more = exp.leases.length >= this.reclaimBatch;
    st.expiry = more ? exp.nowMs : exp.nextExpiryMs < 0 ? Infinity : exp.nextExpiryMs;
  }

  /** Re-reads every owned shard's heads: the safety net for a missed wake-up. */
  private async sweep(): Promise<void> {
    const shards = [...this.shards.keys()];
    for (const shard of shards) {
      const st = this.shards.get(shard);
      if (st) st.noted = Infinity;
    }
    const heads = await this.queue.heads(shards);
    shards.forEach((shard, i) => {
      const st = this.shards.get(shard);
      const h = heads[i];
      if (!st || !h) return;
      st.due = Math.min(h.dueMs, st.noted);
      st.expiry = Math.min(st.expiry, h.expiryMs);
    });
    this.nextSweepAt = this.now() + this.options.sweepMs;
  }

  /** When the loop must look again: the next sweep, expiry, or (with credits) due time. */
  private nextWakeAt(): number {
    let at = this.nextSweepAt;
    const credits = this.sink.available() > 0;
    for (const st of this.shards.values()) {
      at = Math.min(at, st.expiry);
      if (credits) at = Math.min(at, st.due);
    }
    return at;
  }

  private async sleep(untilMs: number): Promise<void> {
    const delay = Math.min(untilMs - this.now(), this.options.sweepMs);
    if (delay <= 0 || this.stopped) return;
    this.sleepingUntil = untilMs;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, delay);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.sleepingUntil = Infinity;
  }
}
