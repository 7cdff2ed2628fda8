// ExecutorService.ListPauses and ResumePauses: the runner lists the waits on the event names of a
// Kafka batch, matches the events against them, and resumes the matches here. A resume resolves
// the wait's pending op with the event (advance-run.lua: the first resolver wins, the timeout item
// included), then enqueues the discovery call that carries the run on, then drops the wait from
// the index. Each step is idempotent, so the runner simply retries the whole call on any error.

import type { Clock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import canonicalize from "canonicalize";
import type { Canceller } from "./cancel.js";
import type { HistoryEntry } from "./history.js";
import { callItem } from "./items.js";
import type { Pause, PauseStore } from "./pauses.js";
import { resumedStep } from "./records.js";
import type { RunStore } from "./state.js";
import { resolvedSpan } from "./tracing.js";

export interface PauseResume {
  runId: string;
  opId: string;
  environmentId: string;
  eventName: string;
  eventId: string;
  eventJson: string;
  /** When set, the op resolves with this error instead of the event (an invoke that cannot start). */
  errorJson: string;
  /** A `cancelOn` entry: the event cancels the run. */
  cancel: boolean;
}

export interface ResumerDeps {
  store: RunStore;
  pauses: PauseStore;
  /** QueueService.Enqueue; must reject when the items were not all accepted. */
  enqueue(items: NewItem[]): Promise<void>;
  history: { record(entries: HistoryEntry[]): Promise<void> };
  /** Cancels a run whose `cancelOn` an event matched. */
  canceller: Pick<Canceller, "cancel">;
  clock: Clock;
  log: Logger;
}

/** Lists and resumes waits; see the module comment. */
export class Resumer {
  constructor(private readonly deps: ResumerDeps) {}

  async list(queries: Array<{ environmentId: string; eventName: string }>): Promise<Pause[]> {
    for (const q of queries) {
      if (!q.environmentId || !q.eventName)
        throw new ValidationError("every query needs environment_id and event_name");
    }
    return this.deps.pauses.list(queries);
  }

  /** A `cancelOn` matched: cancel the run (its end removes its other `cancelOn` entries). */
  private async cancelRun(r: PauseResume): Promise<boolean> {
    try {
      const reason = `cancelled by event ${r.eventId} (${r.eventName})`;
      const res = await this.deps.canceller.cancel(r.runId, { environmentId: r.environmentId, reason });
      return res.cancelled;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Resumes each wait with its event; returns per resume whether that event resumed the wait. */
  async resume(resumes: PauseResume[]): Promise<boolean[]> {
    const memos = resumes.map((r, i) => {
      if (!r.runId || !r.opId || !r.environmentId || !r.eventName || !r.eventId) {
        throw new ValidationError(
          `resumes[${i}]: run_id, op_id, environment_id, event_name and event_id are required`,
        );
      }
      let memo: string | undefined;
      try {
        memo = canonicalize(
          r.errorJson ? { error: JSON.parse(r.errorJson) } : { data: JSON.parse(r.eventJson) },
        );
      } catch {
        memo = undefined;
      }
      if (!memo) throw new ValidationError(`resumes[${i}]: event_json or error_json is not JSON`);
      return memo;
    });
    const next: NewItem[] = [];
    const records: HistoryEntry[] = [];
    const now = this.deps.clock.now();
    // won: this event resolved the wait; lost: another resolver did (it owns the index entry and
    // drops it once the run is carried on); gone: the run ended or expired.
    const outcomes = await Promise.all(
      resumes.map(async (r, i): Promise<"won" | "lost" | "gone"> => {
        if (r.cancel) return (await this.cancelRun(r)) ? "won" : "gone";
        try {
          const adv = await this.deps.store.advance(r.runId, {
            saves: [],
            resolve: { opId: r.opId, resolver: `e:${r.eventId}`, memoJson: memos[i] },
            limits: false,
          });
          if (adv.resolution === "lost") return "lost";
          const run = await this.deps.store.load(r.runId);
          if (!run) return "gone";
          const output = r.errorJson ? "null" : r.eventJson;
          const traceParent = resolvedSpan(run.traceParent, r.opId, r.opId, now);
          records.push({ $case: "step", value: resumedStep(run, r.opId, r.opId, now, output), traceParent });
          if (adv.resolution === "discover") next.push(callItem(run, `d:${r.opId}`, { stepId: "step" }));
          return "won";
        } catch (err) {
          if (err instanceof ConflictError || err instanceof NotFoundError) return "gone";
          throw err;
        }
      }),
    );
    void this.deps.history.record(records);
    if (next.length > 0) await this.deps.enqueue(next);
    // Only now, with the run carried on, may the wait leave the index: a retry of this call must
    // still find a wait whose discovery call was not enqueued yet.
    await Promise.all(
      resumes.flatMap((r, i) =>
        outcomes[i] === "lost"
          ? []
          : [this.deps.pauses.remove(r.environmentId, r.eventName, r.runId, r.opId)],
      ),
    );
    const resumed = outcomes.map((o) => o === "won");
    this.deps.log.debug(
      { resumes: resumes.length, resumed: resumed.filter(Boolean).length },
      "waits resumed",
    );
    return resumed;
  }
}
