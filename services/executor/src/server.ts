// gRPC handlers of ExecutorService: proto <-> domain translation only.

import { serveCallStream } from "@stepline/internal/call-stream";
import { ValidationError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  CancelFunctionRunsRequest,
  CancelFunctionRunsResponse,
  CancelRunRequest,
  CancelRunResponse,
  CheckpointCall,
  CheckpointResult,
  CheckpointsRequest,
  CheckpointsResponse,
  ExecutorServiceServer,
  ListPausesAnswer,
  ListPausesCall,
  ListPausesRequest,
  ListPausesResponse,
  ListPausesStreamRequest,
  ListPausesStreamResponse,
  ResumePausesRequest,
  ResumePausesResponse,
  RunSpec,
  ScheduleRunsAnswer,
  ScheduleRunsCall,
  ScheduleRunsRequest,
  ScheduleRunsResponse,
  ScheduleRunsStreamRequest,
  ScheduleRunsStreamResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { Canceller } from "./cancel.js";
import type { Checkpointer } from "./checkpoint.js";
import type { Resumer } from "./resume.js";
import type { Scheduler } from "./schedule.js";

/** The ExecutorService implementation over `scheduler` and `resumer`. */
export function executorService(
  scheduler: Scheduler,
  resumer: Resumer,
  canceller: Canceller,
  checkpointer: Checkpointer,
  log: Logger,
): ExecutorServiceServer {
  const schedule = (runs: RunSpec[]) =>
    scheduler.schedule(
      runs.map((r) => ({
        runId: r.runId,
        accountId: r.accountId,
        environmentId: r.environmentId,
        appId: r.appId,
        functionId: r.functionId,
        functionVersion: r.functionVersion,
        url: r.url,
        maxAttempts: r.maxAttempts,
        eventsJson: r.eventsJson,
        cancelOn: r.cancelOn,
        startTimeoutMs: r.startTimeoutMs,
        finishTimeoutMs: r.finishTimeoutMs,
        flow: r.flow,
        singleton: r.singleton,
        traceParent: r.traceParent,
      })),
    );
  return {
    // One event-api's checkpoints: each call saved as if its ops had been the call's answer.
    checkpoints: (call) =>
      serveCallStream<CheckpointCall, CheckpointResult, CheckpointsRequest, CheckpointsResponse>(call, {
        calls: (req) => req.calls,
        pack: (results) => ({ results }),
        handle: async (c) => {
          if (!c.environmentId || !c.runId)
            throw new ValidationError("environment_id and run_id are required");
          const saved = await checkpointer.checkpoint({
            environmentId: c.environmentId,
            runId: c.runId,
            stepsJson: c.stepsJson,
          });
          return { saved };
        },
        empty: { saved: 0 },
        log,
      }),
    scheduleRuns: unary<ScheduleRunsRequest, ScheduleRunsResponse>(log, async (req) => ({
      results: await schedule(req.runs),
    })),
    scheduleRunsStream: (call) =>
      serveCallStream<
        ScheduleRunsCall,
        ScheduleRunsAnswer,
        ScheduleRunsStreamRequest,
        ScheduleRunsStreamResponse
      >(call, {
        calls: (req) => req.calls,
        pack: (answers) => ({ answers }),
        handle: async (c) => ({ results: await schedule(c.runs) }),
        empty: { results: [] },
        log,
      }),
    listPauses: unary<ListPausesRequest, ListPausesResponse>(log, async (req) => ({
      pauses: await resumer.list(req.queries),
    })),
    listPausesStream: (call) =>
      serveCallStream<ListPausesCall, ListPausesAnswer, ListPausesStreamRequest, ListPausesStreamResponse>(
        call,
        {
          calls: (req) => req.calls,
          pack: (answers) => ({ answers }),
          handle: async (c) => ({ pauses: await resumer.list(c.queries) }),
          empty: { pauses: [] },
          log,
        },
      ),
    cancelRun: unary<CancelRunRequest, CancelRunResponse>(log, async (req) => {
      if (!req.environmentId || !req.runId)
        throw new ValidationError("environment_id and run_id are required");
      return canceller.cancel(req.runId, {
        environmentId: req.environmentId,
        reason: "cancelled through the API",
      });
    }),
    cancelFunctionRuns: unary<CancelFunctionRunsRequest, CancelFunctionRunsResponse>(log, async (req) => {
      const res = await canceller.cancelFunctionRuns({
        environmentId: req.environmentId,
        functionId: req.functionId,
        fromMs: req.startedAfterMs,
        toMs: req.startedBeforeMs,
        limit: req.limit,
      });
      return { cancelledRunIds: res.runIds, more: res.more };
    }),
    resumePauses: unary<ResumePausesRequest, ResumePausesResponse>(log, async (req) => {
      const resumed = await resumer.resume(req.resumes);
      return {
        results: req.resumes.map((r, i) => ({ runId: r.runId, opId: r.opId, resumed: resumed[i] ?? false })),
      };
    }),
  };
}
