// SDK v4 checkpointing (docs/sdk-protocol.md, "Checkpointing"): the SDK runs steps inside one call
// and, after each, POSTs their results to event-api's /v1/checkpoint/<run>/async, which passes them
// on its ExecutorService.Checkpoints stream and answers once they are saved. They are saved exactly
// as if the call had answered them (first writer wins), so they are durable before the SDK moves
// on, and a retried or redelivered call finds them in its memo and never runs them again.
import type { Clock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError } from "@stepline/internal/errors";
import type { HistoryEntry } from "./history.js";
import { stepRecord } from "./records.js";
import type { RunStore } from "./state.js";
import { RunLimitError } from "./state.js";
import { checkpointedSteps } from "./steps.js";
import { stepSpan } from "./tracing.js";

export interface CheckpointDeps {
  store: RunStore;
  history: { record(e: HistoryEntry[]): Promise<void> };
  clock: Clock;
  /** Fails a running run with a message, and does what follows its end (finalize.ts failRun). */
  failRun(runId: string, message: string): Promise<void>;
}

export class Checkpointer {
  constructor(private readonly deps: CheckpointDeps) {}

  /**
   * Saves the step results of a checkpoint; the number saved now. NotFoundError for a run of
   * another environment or none, ConflictError for a run that has ended (a stale dispatch).
   */
  async checkpoint(req: { environmentId: string; runId: string; stepsJson: string }): Promise<number> {
    const startMs = this.deps.clock.now();
    const steps = checkpointedSteps(req.stepsJson);
    if (steps.length === 0) {
      // Nothing to save: only say whether the run is there and going.
      const brief = await this.deps.store.brief(req.runId);
      if (!brief || brief.environmentId !== req.environmentId) throw notFound(req.runId);
      if (brief.status !== "running") throw new ConflictError(`run ${req.runId} has ended (${brief.status})`);
      return 0;
    }
    // One script call, not the run's state: a checkpoint comes after every step. It checks the
    // environment and that the run is going, and answers the run's account and trace.
    let adv: Awaited<ReturnType<RunStore["advance"]>>;
    try {
      adv = await this.deps.store.advance(req.runId, {
        saves: steps.map((s) => ({ stepId: s.stepId, memoJson: s.memoJson })),
        environmentId: req.environmentId,
      });
    } catch (err) {
      if (err instanceof NotFoundError) throw notFound(req.runId);
      if (err instanceof ConflictError) throw new ConflictError(`run ${req.runId} has ended`);
      if (err instanceof RunLimitError) {
        // The run fails here; the 409 stops the SDK (a stale dispatch), and the call's answer
        // then finds the run ended.
        await this.deps.failRun(req.runId, err.message);
        throw new ConflictError(`run ${req.runId} has ended: ${err.message}`);
      }
      throw err;
    }
    const run = { runId: req.runId, accountId: adv.run?.accountId ?? "", environmentId: req.environmentId };
    const now = this.deps.clock.now();
    // The SDK's own timing places each step; without it a step spans this checkpoint alone.
    const trace = { parent: adv.run?.traceParent ?? "", startMs };
    const records: HistoryEntry[] = steps
      .filter((_, i) => adv.saved[i])
      .map((s) => ({
        $case: "step",
        value: stepRecord(run, s, 0, now),
        traceParent: stepSpan(trace, s, 0, now),
      }));
    void this.deps.history.record(records);
    return records.length;
  }
}

const notFound = (runId: string) => new NotFoundError(`run ${runId} not found`);
