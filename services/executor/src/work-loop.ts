// One long-lived QueueService.Work stream to one queue replica: credits out (as many as the
// WorkPool grants it from the slots its streams share), leased items in, and completions, retries
// and extensions out in batches, each answered per item. Every held item has a lease keeper that
// extends it every lease/3 and aborts the work (signal reason LEASE_LOST) when the lease is lost
// or cannot be confirmed in time.
//
// Hand-off: a completion whose next items include one due now asks the queue to lease it to this
// stream at once (Completion.hand_off), keeping the slot for the run's next call instead of
// giving it back to the queue's scheduling round. While it is unanswered it counts as one credit
// sent (the item may arrive first); its result says whether the item came (OpResult.handed_off),
// and when it did not (or the answer never comes) the slot goes back to the pool.
//
// Start hand-off: a new run's start item sent on the stream (enqueueStarts) is enqueued and, when
// it can go at once, leased to this stream in the same step, spending one of the credits the
// queue holds for it (the queue counts it; the item arrives like any other). A stream that breaks
// answers its starts with null instead of sending them again: the caller enqueues them elsewhere.

import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { Clock } from "@stepline/internal/clock";
import type { Logger } from "@stepline/internal/log";
import { backoffMs } from "@stepline/internal/retry";
import type {
  Lease,
  LeasedItem,
  NewItem,
  OpResult,
  WorkRequest,
  WorkResponse,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import { OpStatus } from "@stepline/proto/stepline/queue/v1/queue_service";
import { type BackoffPolicy, backoffDelayMs } from "./backoff.js";
import { releasesTotal } from "./metrics.js";
import type { Op, PendingOp } from "./work-ops.js";
import { OPS_PER_MESSAGE, opItemId, toRequest, wantsHandOff } from "./work-ops.js";

/** Abort reason: the lease is gone; drop the work without acting on the queue. */
export const LEASE_LOST = "lease-lost";
/** Abort reason: the process is stopping; release the item (Retry with its attempt unchanged). */
export const SHUTDOWN = "shutdown";

export type OpOutcome = "ok" | "stale";

/** What a handler gets for one leased item. */
export interface ItemContext {
  lease: Lease;
  /** Aborted with reason LEASE_LOST or SHUTDOWN. */
  signal: AbortSignal;
  /** Leased as the hand-off of this executor's own completion (LeasedItem.handed_off). */
  handedOff?: boolean;
  /** Acks the item and enqueues `next` atomically; stops the lease keeper first. */
  complete(next: NewItem[]): Promise<OpOutcome>;
  /** Hands the item out again at `runAtMs` (0 = now) with `attempt`; stops the keeper first. */
  retry(runAtMs: number, attempt: number): Promise<OpOutcome>;
  /**
   * Hands the item back without spending an attempt, because something other than the app failed
   * (a dependency of the engine). It comes back after the release backoff, which grows with each
   * release in a row (LeasedItem.releases), and the queue does not count it as a delivery.
   */
  release(): Promise<OpOutcome>;
}

export type ItemHandler = (item: NewItem, ctx: ItemContext) => Promise<void>;

export interface WorkLoopOptions {
  /** How long a completion or retry may wait for the queue (reconnects included) before it counts as stale. */
  opTimeoutMs: number;
  /** Ask for hand-offs (see the module comment); false: every call goes through the queue's round. */
  handOff: boolean;
  /** The delay of a release (ItemContext.release), by the releases in a row before it. */
  releaseBackoff: BackoffPolicy;
  random?: () => number;
}

interface Held {
  lease: Lease;
  expiresAtMs: number;
  controller: AbortController;
  keeper: NodeJS.Timeout | undefined;
  keeping: boolean;
  /** The handler asked the queue to complete, retry or release the item. */
  settled: boolean;
  done: Promise<void>;
}

/** Runs one Work stream and dispatches leased items to `handler`; credits come from `grant`. */
export class WorkLoop {
  private call: ClientDuplexStream<WorkRequest, WorkResponse> | undefined;
  private connected = false;
  private stopping = false;
  private closed = false;
  /** Stream breaks in a row (reset by the first answer of a new stream): the reconnect backoff. */
  private breaks = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Credits sent on this stream and not used by the queue yet. */
  private outstanding = 0;
  /** Credits granted, to be sent at the next flush. */
  private creditsToSend = 0;
  private readonly held = new Map<string, Held>();
  private queued: PendingOp[] = [];
  private readonly sent = new Map<number, PendingOp[]>();
  private nextBatchId = 1;
  private flushScheduled = false;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly open: () => ClientDuplexStream<WorkRequest, WorkResponse>,
    private readonly handler: ItemHandler,
    private readonly opts: WorkLoopOptions,
    /** Told whenever this stream's credits or held items change (the pool then grants credits). */
    private readonly changed: () => void,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {
    this.sweeper = setInterval(() => this.expireOps(), 1_000);
    this.sweeper.unref();
  }

  /** Opens the stream (and keeps reopening it with backoff until stop). */
  start(): void {
    this.connect();
  }

  /** True while the stream is open. */
  isConnected(): boolean {
    return this.connected;
  }

  /** Items held right now. */
  inFlight(): number {
    return this.held.size;
  }

  /** Credits granted on the current stream and not used yet (0 while it is down). */
  credits(): number {
    return this.connected ? this.outstanding + this.creditsToSend : 0;
  }

  /** Asks the queue for `count` more items (sent at the next flush). */
  grant(count: number): void {
    if (this.stopping || !this.connected || count <= 0) return;
    this.creditsToSend += count;
    this.scheduleFlush();
  }

  /**
   * Enqueues new runs' start items on this stream, each leased to it at once when the queue can
   * (see the module comment). Per item: the queue's result, or null when the stream is down or
   * broke before answering (then enqueue it elsewhere).
   */
  enqueueStarts(items: NewItem[]): Promise<Array<OpResult | null>> {
    if (!this.connected || this.stopping) return Promise.resolve(items.map(() => null));
    const deadline = this.clock.now() + this.opts.opTimeoutMs;
    return Promise.all(items.map((item) => this.enqueueOp({ kind: "start", item }, deadline)));
  }

  /**
   * Stops asking for work, lets held items finish for up to `graceMs`, then aborts the rest with
   * SHUTDOWN (their handlers release them) and waits up to `releaseMs` for that, then closes.
   */
  async stop(graceMs: number, releaseMs = 3_000): Promise<void> {
    this.stopping = true;
    this.creditsToSend = 0;
    await this.waitIdle(graceMs);
    if (this.held.size > 0) {
      this.log.info({ items: this.held.size }, "releasing items still running at shutdown");
      for (const h of this.held.values()) h.controller.abort(SHUTDOWN);
      await this.waitIdle(releaseMs);
    }
    this.closed = true;
    clearInterval(this.sweeper);
    clearTimeout(this.reconnectTimer);
    for (const p of [...this.queued, ...[...this.sent.values()].flat()]) p.resolve(null);
    this.queued = [];
    this.sent.clear();
    this.call?.end();
    this.call?.cancel();
  }

  private async waitIdle(ms: number): Promise<void> {
    const deadline = this.clock.now() + ms;
    while (this.held.size > 0 && this.clock.now() < deadline) {
      const all = Promise.all([...this.held.values()].map((h) => h.done));
      await Promise.race([all, new Promise((r) => setTimeout(r, Math.max(1, deadline - this.clock.now())))]);
    }
  }

  private connect(): void {
    if (this.closed) return;
    const call = this.open();
    this.call = call;
    this.connected = true;
    // Credits belong to a stream: a new stream starts with none, and the pool grants it some.
    this.outstanding = 0;
    this.creditsToSend = 0;
    call.on("data", (res: WorkResponse) => {
      this.breaks = 0;
      this.onResponse(res);
    });
    call.on("error", (err: Error) => this.onBroken(call, err));
    call.on("end", () => this.onBroken(call));
    // Operations sent on a broken stream went unanswered; send them again (all are idempotent),
    // except starts, which the caller enqueues elsewhere. Hand-off credits went with the old
    // stream's count.
    for (const ops of this.sent.values()) {
      for (const p of ops) {
        p.handOffCounted = false;
        if (p.op.kind === "start") p.resolve(null);
        else this.queued.push(p);
      }
    }
    this.sent.clear();
    this.scheduleFlush();
    this.changed();
  }

  private onBroken(call: ClientDuplexStream<WorkRequest, WorkResponse>, err?: Error): void {
    if (call !== this.call || !this.connected) return;
    this.connected = false;
    this.call = undefined;
    // The replica forgets a closed stream's credits; their slots are free for the other streams.
    this.outstanding = 0;
    this.creditsToSend = 0;
    call.cancel();
    this.changed();
    if (this.closed) return;
    // Capped low: a restarted queue should get its executors back within a second.
    const delay = backoffMs(++this.breaks, { firstMs: 100, maxMs: 1_000 });
    this.log.warn({ err: err?.message, retryInMs: delay }, "work stream broke; reconnecting");
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private onResponse(res: WorkResponse): void {
    if (res.response?.$case === "items") {
      for (const li of res.response.value.items) this.accept(li);
    } else if (res.response?.$case === "results") {
      const { batchId, results } = res.response.value;
      const ops = this.sent.get(batchId);
      if (!ops) return;
      this.sent.delete(batchId);
      const byId = new Map(results.map((r) => [r.itemId, r]));
      let returned = 0;
      for (const p of ops) {
        const itemId = opItemId(p.op);
        const r = byId.get(itemId);
        if (!r) this.log.warn({ batchId, itemId }, "queue answered no result for an op");
        // A hand-off that brought no item (none was due, or an older replica) gives its slot back.
        if (p.handOffCounted && !r?.handedOff) returned++;
        p.handOffCounted = false;
        p.resolve(r ?? null);
      }
      this.uncount(returned);
    }
  }

  private accept(li: LeasedItem): void {
    const item = li.item;
    if (!item) return;
    if (this.outstanding === 0)
      this.log.warn({ itemId: item.id }, "queue sent more items than credits granted");
    this.outstanding = Math.max(0, this.outstanding - 1);
    const lease: Lease = {
      itemId: item.id,
      accountId: item.accountId,
      generation: li.generation,
      partitionId: li.partitionId,
    };
    if (this.held.has(item.id)) {
      // Re-leased while we still hold it (our lease expired): the old handler is fenced out.
      this.held.get(item.id)?.controller.abort(LEASE_LOST);
      this.held.delete(item.id);
    }
    const controller = new AbortController();
    const held: Held = {
      lease,
      expiresAtMs: li.leaseExpiresAtMs,
      controller,
      keeper: undefined,
      keeping: true,
      settled: false,
      done: Promise.resolve(),
    };
    this.held.set(item.id, held);
    this.changed();
    this.keep(held);
    const retry = (runAtMs: number, attempt: number) =>
      this.finishOp(held, { kind: "retry", lease, runAtMs, attempt });
    const release = () => {
      releasesTotal.inc();
      const random = this.opts.random ?? Math.random;
      return retry(
        this.clock.now() + backoffDelayMs(li.releases, this.opts.releaseBackoff, random()),
        item.attempt,
      );
    };
    const ctx: ItemContext = {
      lease,
      signal: controller.signal,
      handedOff: li.handedOff,
      complete: (next) => this.finishOp(held, { kind: "complete", lease, next }),
      retry,
      release,
    };
    const run = this.stopping ? ctx.retry(0, item.attempt).then(() => undefined) : this.handler(item, ctx);
    held.done = run
      .catch(async (err: unknown) => {
        this.log.error({ err, itemId: item.id }, "item handler failed; releasing the item");
        // Released at once rather than left to its lease's expiry (unless the handler settled it
        // before throwing, or the lease is gone).
        if (!held.settled && controller.signal.reason !== LEASE_LOST) await release();
      })
      .finally(() => this.forget(held));
  }

  private forget(held: Held): void {
    this.stopKeeping(held);
    if (this.held.get(held.lease.itemId) === held) this.held.delete(held.lease.itemId);
    this.changed();
  }

  /** Extends the lease every third of its remaining time; aborts when it is lost or runs out. */
  private keep(held: Held): void {
    if (!held.keeping) return;
    const remaining = held.expiresAtMs - this.clock.now();
    if (remaining <= 0) {
      held.controller.abort(LEASE_LOST);
      return;
    }
    held.keeper = setTimeout(
      () => {
        if (!held.keeping) return;
        // Give up if no extension is confirmed before the lease ends.
        const expiry = setTimeout(
          () => held.keeping && held.controller.abort(LEASE_LOST),
          held.expiresAtMs - this.clock.now(),
        );
        this.enqueueOp({ kind: "extend", lease: held.lease }, held.expiresAtMs).then((r) => {
          clearTimeout(expiry);
          if (!held.keeping) return;
          if (r?.status === OpStatus.OP_STATUS_OK) {
            held.expiresAtMs = r.leaseExpiresAtMs || held.expiresAtMs;
            this.keep(held);
          } else {
            this.log.warn({ itemId: held.lease.itemId }, "lease lost; dropping the work");
            held.controller.abort(LEASE_LOST);
          }
        });
      },
      Math.max(1, Math.floor(remaining / 3)),
    );
  }

  private stopKeeping(held: Held): void {
    held.keeping = false;
    clearTimeout(held.keeper);
  }

  private async finishOp(held: Held, op: Op): Promise<OpOutcome> {
    // The keeper stops before the ack, so a late extension can never race the completion.
    this.stopKeeping(held);
    held.settled = true;
    const r = await this.enqueueOp(op, this.clock.now() + this.opts.opTimeoutMs);
    return r?.status === OpStatus.OP_STATUS_OK ? "ok" : "stale";
  }

  private enqueueOp(op: Op, deadlineMs: number): Promise<OpResult | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.queued.push({ op, deadlineMs, resolve });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Sends credits and one message per kind of queued op, each batch tagged with its own id. */
  private flush(): void {
    const call = this.call;
    if (!call || !this.connected) return;
    if (this.creditsToSend > 0 && !this.stopping) {
      call.write({ request: { $case: "credits", value: { count: this.creditsToSend } } });
      this.outstanding += this.creditsToSend;
    }
    this.creditsToSend = 0;
    const ops = this.queued;
    this.queued = [];
    const byKind = {
      start: [] as PendingOp[],
      complete: [] as PendingOp[],
      retry: [] as PendingOp[],
      extend: [] as PendingOp[],
    };
    for (const p of ops) byKind[p.op.kind].push(p);
    for (const [kind, all] of Object.entries(byKind)) {
      for (let at = 0; at < all.length; at += OPS_PER_MESSAGE) {
        this.sendBatch(call, kind as Op["kind"], all.slice(at, at + OPS_PER_MESSAGE));
      }
    }
  }

  /** Sends one message of ops of one kind, remembered by its batch id until it is answered. */
  private sendBatch(
    call: ClientDuplexStream<WorkRequest, WorkResponse>,
    kind: Op["kind"],
    list: PendingOp[],
  ) {
    const batchId = this.nextBatchId++;
    this.sent.set(batchId, list);
    // Decided per send (a resend after a reconnect counts again on the new stream); a stopping
    // loop takes nothing new.
    const asking = kind === "complete" && this.opts.handOff && !this.stopping;
    const handOffs = asking ? list.filter((p) => wantsHandOff(p.op)) : [];
    for (const p of handOffs) p.handOffCounted = true;
    this.outstanding += handOffs.length;
    call.write(toRequest(kind, batchId, list, new Set(handOffs)));
  }

  /** Hand-off credits that will not bring an item: their slots go back to the pool. */
  private uncount(n: number): void {
    if (n <= 0) return;
    this.outstanding = Math.max(0, this.outstanding - n);
    this.changed();
  }

  /** Ops past their deadline (queue unreachable) count as stale. */
  private expireOps(): void {
    const now = this.clock.now();
    const expired = (p: PendingOp) => p.deadlineMs <= now;
    for (const p of this.queued.filter(expired)) p.resolve(null);
    this.queued = this.queued.filter((p) => !expired(p));
    for (const [id, list] of this.sent) {
      const gone = list.filter(expired);
      this.uncount(gone.filter((p) => p.handOffCounted).length);
      for (const p of gone) p.resolve(null);
      const left = list.filter((p) => !expired(p));
      if (left.length === 0) this.sent.delete(id);
      else this.sent.set(id, left);
    }
  }
}
