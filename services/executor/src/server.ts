// gRPC handlers of ExecutorService: proto <-> domain translation only.

import type { ServerDuplexStream } from "@grpc/grpc-js";
import { toGrpcError, ValidationError } from "@stepline/internal/errors";
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
  ListPausesRequest,
  ListPausesResponse,
  ResumePausesRequest,
  ResumePausesResponse,
  ScheduleRunsRequest,
  ScheduleRunsResponse,
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
  return {
    checkpoints: (call) => checkpointStream(call, checkpointer, log),
    scheduleRuns: unary<ScheduleRunsRequest, ScheduleRunsResponse>(log, async (req) => {
      const results = await scheduler.schedule(
        req.runs.map((r) => ({
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
      return { results };
    }),
    listPauses: unary<ListPausesRequest, ListPausesResponse>(log, async (req) => {
      const pauses = await resumer.list(req.queries);
      return { pauses };
    }),
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

/**
 * One event-api's stream of checkpoints: each batch's calls are saved concurrently and answered
 * together once all are done (a result per call, with its code). The stream ends when event-api
 * ends it, after the answers of the batches in flight.
 */
function checkpointStream(
  call: ServerDuplexStream<CheckpointsRequest, CheckpointsResponse>,
  checkpointer: Checkpointer,
  log: Logger,
): void {
  let pending = 0;
  let clientDone = false;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    call.end();
  };
  const save = async (c: CheckpointCall): Promise<CheckpointResult> => {
    try {
      if (!c.environmentId || !c.runId) throw new ValidationError("environment_id and run_id are required");
      const saved = await checkpointer.checkpoint({
        environmentId: c.environmentId,
        runId: c.runId,
        stepsJson: c.stepsJson,
      });
      return { id: c.id, code: 0, message: "", saved };
    } catch (err) {
      const mapped = toGrpcError(err);
      if (mapped.code === 13) log.error({ err, runId: c.runId }, "checkpoint failed");
      return { id: c.id, code: mapped.code ?? 13, message: mapped.details ?? "", saved: 0 };
    }
  };
  call.on("data", (req: CheckpointsRequest) => {
    pending++;
    void Promise.all(req.calls.map(save)).then((results) => {
      pending--;
      if (!ended) call.write({ results });
      if (clientDone && pending === 0) end();
    });
  });
  call.on("end", () => {
    clientDone = true;
    if (pending === 0) end();
  });
  // A cancelled stream (event-api gone): its answers have nowhere to go.
  call.on("cancelled", () => {
    ended = true;
  });
  call.on("error", () => {
    ended = true;
  });
}
