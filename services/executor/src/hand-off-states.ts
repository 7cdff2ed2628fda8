// A run's state as a call left it, kept for the run's next call when that call will come back to
// this executor as a hand-off (services/executor/README.md, "Hand-off"). The queue leases the next
// item to the completing stream in the completion itself, so nothing else has held it in between:
// when the item arrives marked handed_off, its handler starts from this state instead of loading
// the run again (the events, every memo, the stack), once one HMGET has shown that the run is still
// going and no advance came since (execute.ts).
//
// Only plain sequential progress is kept: a discovery call whose saves all landed, that planned
// nothing, with no op pending, and whose saves lengthened the stack by exactly their own number.
// Then no other item of the run exists that could write to it; anything else loads as before.
// A new run's state as its creation wrote it is kept the same way for its start item, which the
// queue may lease back in the enqueue (a start hand-off, WorkPool.enqueueStarts).

import type { Clock } from "@stepline/internal/clock";
import type { AdvanceResult, RunState, StepSave } from "./state.js";

/** What `stateAfter` needs of a settled call. */
export interface SequentialCall {
  stepId: string;
  saves: StepSave[];
  planned: number;
  disableImmediate: boolean;
  reqVersion?: number;
}

/**
 * The run's state after `call`, when the call was plain sequential progress (see the module
 * comment): then the advance's answer proves it current, and the run's next call can start from it
 * (a hand-off, or the next call made on the same lease, execute.ts). Otherwise undefined.
 */
export function stateAfter(run: RunState, call: SequentialCall, adv: AdvanceResult): RunState | undefined {
  const sequential =
    call.stepId === "step" &&
    call.planned === 0 &&
    call.saves.length > 0 &&
    run.pending.size === 0 &&
    adv.resolution === "none" &&
    adv.saved.every(Boolean) &&
    adv.stackLength === run.stack.length + call.saves.length;
  if (!sequential) return undefined;
  const steps = new Map(run.steps);
  for (const s of call.saves) steps.set(s.stepId, s.memoJson);
  return {
    ...run,
    steps,
    stack: [...run.stack, ...call.saves.map((s) => s.stepId)],
    calls: adv.callNumber,
    reqVersion: call.reqVersion ?? run.reqVersion,
    disableImmediate: run.disableImmediate || call.disableImmediate,
  };
}

export class HandOffStates {
  private readonly states = new Map<string, { state: RunState; atMs: number; bytes: number }>();
  private bytes = 0;

  /**
   * An entry is taken by its handed-off item within milliseconds. One whose item did not come that
   * way (no item was due, the stream broke, a replica without hand-offs) is never taken: only a
   * completion that lists an item id, or the start that enqueues it, can hand it off, and each id
   * is listed by one call (WorkPool drops a start's entry when the queue did not hand it off).
   * Such entries go once older than `maxAgeMs`, or oldest first past `max` entries or `maxBytes`
   * (the events and memos they hold).
   */
  constructor(
    private readonly clock: Clock,
    private readonly max = 1_000,
    private readonly maxAgeMs = 5_000,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {}

  /**
   * Keeps the state after `saves` for the item `nextItemId`, when the call was sequential progress
   * (see the module comment); otherwise keeps nothing.
   */
  keepAfter(run: RunState, call: SequentialCall, adv: AdvanceResult, nextItemId: string): void {
    const state = stateAfter(run, call, adv);
    if (state) this.keep(nextItemId, state);
  }

  /**
   * Keeps `state` for the item `itemId`: a run's state as its last write left it, for that item
   * should it come back to this executor as a hand-off (a new run's start item, WorkPool).
   */
  keep(itemId: string, state: RunState): void {
    let bytes = state.eventsJson.length;
    for (const memo of state.steps.values()) bytes += memo.length;
    const now = this.clock.now();
    // Entries are kept in the order they were made: the oldest are first.
    for (const [id, e] of this.states) {
      const full = this.states.size >= this.max || this.bytes + bytes > this.maxBytes;
      if (!full && now - e.atMs <= this.maxAgeMs) break;
      this.remove(id);
    }
    this.states.set(itemId, { state, atMs: now, bytes });
    this.bytes += bytes;
  }

  /** The state kept for a handed-off item (once), or undefined: then the run must be loaded. */
  take(itemId: string): RunState | undefined {
    const entry = this.remove(itemId);
    if (!entry) return undefined;
    return this.clock.now() - entry.atMs <= this.maxAgeMs ? entry.state : undefined;
  }

  /**
   * `take`, then checked against the run as it is now (`progress`: one HMGET of its status and
   * call counter): the kept state is used only while the run is going and no advance came after
   * that completion's (a cancel, or a checkpoint of an abandoned call).
   */
  async takeCurrent(
    itemId: string,
    progress: () => Promise<{ status: string; calls: number } | null>,
  ): Promise<RunState | undefined> {
    const kept = this.take(itemId);
    if (!kept) return undefined;
    const now = await progress();
    return now?.status === "running" && now.calls === kept.calls ? kept : undefined;
  }

  private remove(itemId: string) {
    const entry = this.states.get(itemId);
    if (entry) {
      this.states.delete(itemId);
      this.bytes -= entry.bytes;
    }
    return entry;
  }

  /** Entries kept (tests). */
  size(): number {
    return this.states.size;
  }
}
