// gRPC handlers of ExecutorService: proto <-> domain translation only.

import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  ExecutorServiceServer,
  ListPausesRequest,
  ListPausesResponse,
  ResumePausesRequest,
  ResumePausesResponse,
  ScheduleRunsRequest,
  ScheduleRunsResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { Resumer } from "./resume.js";
import type { Scheduler } from "./schedule.js";

/** The ExecutorService implementation over `scheduler` and `resumer`. */
export function executorService(scheduler: Scheduler, resumer: Resumer, log: Logger): ExecutorServiceServer {
  return {
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
        })),
      );
      return { results };
    }),
    listPauses: unary<ListPausesRequest, ListPausesResponse>(log, async (req) => {
      const pauses = await resumer.list(req.queries);
      return { pauses };
    }),
    resumePauses: unary<ResumePausesRequest, ResumePausesResponse>(log, async (req) => {
      const resumed = await resumer.resume(req.resumes);
      return {
        results: req.resumes.map((r, i) => ({ runId: r.runId, opId: r.opId, resumed: resumed[i] ?? false })),
      };
    }),
  };
}
