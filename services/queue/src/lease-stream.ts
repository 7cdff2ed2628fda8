// The executor side of the scheduler: every open Work stream with the credits it granted. The
// scheduler claims no more than the credits here, and each stream receives at most its own
// credits, one batched message per delivery.
import { executorCredits } from "./metrics.js";
import type { WorkSink } from "./scheduler.js";
import type { LeasedItem } from "./store.js";

/** Cap on credits one stream may hold, so a bad client cannot make us claim without bound. */
export const MAX_CREDITS = 100_000;

export interface StreamHandle {
  credits: number;
  open: boolean;
  send(items: LeasedItem[]): void;
  /** Ends the stream from our side (shutdown). */
  end(): void;
}

export class Dispatcher implements WorkSink {
  private readonly streams = new Set<StreamHandle>();
  private total = 0;
  private rr = 0;

  /** `onCredits` runs whenever credits are granted (the scheduler wakes on it). */
  constructor(private readonly onCredits: () => void = () => {}) {}

  /** Registers a stream. */
  open(send: (items: LeasedItem[]) => void, end: () => void): StreamHandle {
    const handle: StreamHandle = { credits: 0, open: true, send, end };
    this.streams.add(handle);
    return handle;
  }

  /** Adds credits granted by a stream's executor. */
  grant(handle: StreamHandle, count: number): void {
    if (!handle.open || count <= 0) return;
    const added = Math.min(count, MAX_CREDITS - handle.credits);
    handle.credits += added;
    this.total += added;
    executorCredits.set(this.total);
    if (added > 0) this.onCredits();
  }

  /**
   * Takes up to `count` of a stream's credits for items leased to it outside a round (a start
   * hand-off), so no round spends them meanwhile; the number taken.
   */
  take(handle: StreamHandle, count: number): number {
    const taken = handle.open ? Math.max(0, Math.min(count, handle.credits)) : 0;
    handle.credits -= taken;
    this.total -= taken;
    executorCredits.set(this.total);
    return taken;
  }

  /** Returns credits `take` took and no item used (nothing when the stream has closed since). */
  giveBack(handle: StreamHandle, count: number): void {
    this.grant(handle, count);
  }

  /** Forgets a stream; its leased items stay leased until they expire. */
  close(handle: StreamHandle): void {
    if (!handle.open) return;
    handle.open = false;
    this.total -= handle.credits;
    handle.credits = 0;
    this.streams.delete(handle);
    executorCredits.set(this.total);
  }

  /** Ends every stream (shutdown). */
  endAll(): void {
    for (const h of [...this.streams]) {
      this.close(h);
      h.end();
    }
  }

  available(): number {
    return this.total;
  }

  deliver(items: LeasedItem[]): LeasedItem[] {
    const streams = [...this.streams].filter((s) => s.credits > 0);
    let next = 0;
    // Rotate the starting stream so executors share the work.
    const start = streams.length === 0 ? 0 : this.rr++ % streams.length;
    for (let i = 0; i < streams.length && next < items.length; i++) {
      const s = streams[(start + i) % streams.length] as StreamHandle;
      const n = Math.min(s.credits, items.length - next);
      const batch = items.slice(next, next + n);
      next += n;
      s.credits -= n;
      this.total -= n;
      s.send(batch);
    }
    executorCredits.set(this.total);
    return items.slice(next);
  }
}
