// The executor's slots, shared by its Work streams: one stream per queue replica (a replica hands
// out only the shards it owns), one pool of STEPLINE_EXECUTOR_CONCURRENCY slots across them.
//
// Credit policy. A slot is free, held (an item is running) or granted (a credit a stream sent and
// its replica has not used yet). Credits cannot be taken back, so a credit at a replica with no
// work is a slot lost to the others until that replica finds work. Hence:
//   - held + credits of every stream never exceed the concurrency;
//   - each stream is kept topped up to a small standing credit, and only up to it: a quarter of the
//     slots split evenly between the streams (at least one each). A replica that delivers uses up
//     its credit and is topped up again from the free slots, so a busy replica's running items grow
//     into every slot an idle replica is not using, while an idle replica never holds more than its
//     standing credit. The rest of the free slots stay here until some stream delivers.
//   - with a single stream there is nobody to take slots from: its standing credit is every slot.
//   - when slots are scarce, the streams are served in rotation, so none is always last.
// A stream that breaks loses its credits with it (the replica forgets them); its held items keep
// their slots until they finish.

import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { Clock } from "@stepline/internal/clock";
import type { Logger } from "@stepline/internal/log";
import type { NewItem, WorkRequest, WorkResponse } from "@stepline/proto/stepline/queue/v1/queue_service";
import { OpStatus } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { HandOffStates } from "./hand-off-states.js";
import { itemsInFlight } from "./metrics.js";
import type { RunState } from "./state.js";
import type { ItemHandler, WorkLoopOptions } from "./work-loop.js";
import { WorkLoop } from "./work-loop.js";

/** Each stream's options (WorkLoopOptions), and how many items the pool holds at most. */
export interface WorkPoolOptions extends WorkLoopOptions {
  /** Most items held at once across every stream. */
  concurrency: number;
  /** Where a start's state waits for its hand-off (the item handler's, execute.ts). */
  states?: Pick<HandOffStates, "keep" | "take">;
}

/** A new run's start item, and the run's state as its creation left it (absent: load it). */
export interface StartItem {
  item: NewItem;
  state?: RunState;
}

/** What the allocation sees of one stream. */
export interface StreamCredits {
  /** False while the stream is down: it can take no credits. */
  connected: boolean;
  /** Credits granted and not used yet (sent or about to be). */
  credits: number;
}

/** The credit each stream is kept topped up to (see the module comment). */
export function standingCredit(concurrency: number, streams: number): number {
  if (streams <= 1) return concurrency;
  return Math.max(1, Math.floor(concurrency / (4 * streams)));
}

/**
 * How many credits to grant each stream now: free slots (`concurrency` minus `held` minus every
 * stream's credits) top each connected stream up to `standing`, visiting them from `start` on.
 */
export function shareCredits(
  concurrency: number,
  standing: number,
  held: number,
  streams: readonly StreamCredits[],
  start = 0,
): number[] {
  const grants = streams.map(() => 0);
  let free = concurrency - held - streams.reduce((sum, s) => sum + (s.connected ? s.credits : 0), 0);
  for (let k = 0; k < streams.length && free > 0; k++) {
    const i = (start + k) % streams.length;
    const s = streams[i] as StreamCredits;
    if (!s.connected) continue;
    const grant = Math.min(free, Math.max(0, standing - s.credits));
    grants[i] = grant;
    free -= grant;
  }
  return grants;
}

/** The Work streams of the process and the slots they share; see the module comment. */
export class WorkPool {
  private readonly loops: WorkLoop[];
  private readonly standing: number;
  private stopping = false;
  private next = 0;
  /** The stream enqueueStarts tries first. */
  private nextStart = 0;

  constructor(
    open: ReadonlyArray<() => ClientDuplexStream<WorkRequest, WorkResponse>>,
    handler: ItemHandler,
    private readonly opts: WorkPoolOptions,
    log: Logger,
    clock: Clock,
  ) {
    if (open.length === 0) throw new Error("a work pool needs at least one stream");
    if (opts.concurrency < open.length) throw new Error("concurrency must be at least the number of streams");
    this.standing = standingCredit(opts.concurrency, open.length);
    this.loops = open.map(
      (o, i) => new WorkLoop(o, handler, opts, () => this.rebalance(), log.child({ stream: i }), clock),
    );
  }

  /** Opens every stream (each keeps reopening with backoff until stop). */
  start(): void {
    for (const l of this.loops) l.start();
  }

  /** Streams open right now. */
  connected(): number {
    return this.loops.filter((l) => l.isConnected()).length;
  }

  /** Items held right now, across streams. */
  inFlight(): number {
    return this.loops.reduce((sum, l) => sum + l.inFlight(), 0);
  }

  /** Credits granted and not used yet, across streams. */
  credits(): number {
    return this.loops.reduce((sum, l) => sum + (l.isConnected() ? l.credits() : 0), 0);
  }

  /**
   * Enqueues new runs' start items, on a stream whose replica holds credits of ours when one
   * does, so the queue may lease them to us at once (WorkLoop.enqueueStarts); the rest, and all
   * of them with hand-offs off or no credit anywhere, through `enqueue`. Rejects as `enqueue` does.
   * A start's state is kept for its hand-off while it may come (HandOffStates).
   */
  async enqueueStarts(starts: StartItem[], enqueue: (items: NewItem[]) => Promise<void>): Promise<void> {
    const items = starts.map((s) => s.item);
    const loop = this.opts.handOff && !this.stopping ? this.withCredits() : undefined;
    if (!loop) return enqueue(items);
    for (const s of starts) if (s.state) this.opts.states?.keep(s.item.id, s.state);
    const results = await loop.enqueueStarts(items);
    // A handed-off item took its state already (it arrives before its result); the others won't.
    for (const [i, s] of starts.entries())
      if (s.state && !results[i]?.handedOff) this.opts.states?.take(s.item.id);
    const rest = items.filter((_, i) => results[i]?.status !== OpStatus.OP_STATUS_OK);
    if (rest.length > 0) await enqueue(rest);
  }

  /** The next stream, in rotation, whose replica holds credits of ours. */
  private withCredits(): WorkLoop | undefined {
    for (let k = 0; k < this.loops.length; k++) {
      const loop = this.loops[(this.nextStart + k) % this.loops.length] as WorkLoop;
      if (loop.isConnected() && loop.credits() > 0) {
        this.nextStart = (this.nextStart + k + 1) % this.loops.length;
        return loop;
      }
    }
    return undefined;
  }

  /** Stops every stream (see WorkLoop.stop): no more credits, held items finish or are released. */
  async stop(graceMs: number, releaseMs = 3_000): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops.map((l) => l.stop(graceMs, releaseMs)));
  }

  /** Runs whenever a stream opens or breaks or an item arrives or ends: hands out free slots. */
  private rebalance(): void {
    const held = this.inFlight();
    itemsInFlight.set(held);
    if (this.stopping) return;
    const streams = this.loops.map((l) => ({ connected: l.isConnected(), credits: l.credits() }));
    const grants = shareCredits(this.opts.concurrency, this.standing, held, streams, this.next);
    this.next = (this.next + 1) % this.loops.length;
    grants.forEach((n, i) => {
      if (n > 0) this.loops[i]?.grant(n);
    });
  }
}
