// gRPC handlers of ExecutorService: proto <-> domain translation only.

import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  ExecutorServiceServer,
  ScheduleRunsRequest,
  ScheduleRunsResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { Scheduler } from "./schedule.js";

/** The ExecutorService implementation over `scheduler`. */
export function executorService(scheduler: Scheduler, log: Logger): ExecutorServiceServer {
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
  };
}
