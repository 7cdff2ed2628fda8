// An in-process ExecutorService double for the consumer's tests: a real gRPC server on port 0 that
// serves ScheduleRunsStream and ListPausesStream (as the runner uses them) and ResumePauses,
// records every call, and can be told to fail.

import type { ServerDuplexStream } from "@grpc/grpc-js";
import { serveCallStream } from "@stepline/internal/call-stream";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { startGrpcServer, unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  ListPausesAnswer,
  ListPausesCall,
  ListPausesStreamRequest,
  ListPausesStreamResponse,
  Pause,
  PauseResume,
  ResumePausesRequest,
  ResumePausesResponse,
  RunSpec,
  ScheduleRunsAnswer,
  ScheduleRunsCall,
  ScheduleRunsStreamRequest,
  ScheduleRunsStreamResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import { ExecutorServiceService } from "@stepline/proto/stepline/executor/v1/executor_service";

/** What the double records, and how it answers. */
export interface ExecutorDouble {
  /** While set, every ScheduleRuns call fails UNAVAILABLE. */
  failing: boolean;
  calls: Array<{ ok: boolean; runs: RunSpec[] }>;
  /** The waits ListPauses answers with, and every ResumePauses call. */
  pauses: Pause[];
  resumes: PauseResume[][];
}

export function newExecutorDouble(): ExecutorDouble {
  return { failing: false, calls: [], pauses: [], resumes: [] };
}

/** Serves `executor` on 127.0.0.1, a free port. */
export function startExecutorDouble(executor: ExecutorDouble, log: Logger): Promise<GrpcServer> {
  return startGrpcServer("127.0.0.1:0", [
    {
      definition: ExecutorServiceService,
      implementation: {
        scheduleRunsStream: (
          call: ServerDuplexStream<ScheduleRunsStreamRequest, ScheduleRunsStreamResponse>,
        ) =>
          serveCallStream<
            ScheduleRunsCall,
            ScheduleRunsAnswer,
            ScheduleRunsStreamRequest,
            ScheduleRunsStreamResponse
          >(call, {
            calls: (req) => req.calls,
            pack: (answers) => ({ answers }),
            empty: { results: [] },
            log,
            handle: async ({ runs }) => {
              // A run of an event whose data says `poison` is refused, as the executor refuses a
              // RunSpec it cannot take, failing the whole call.
              const poisoned = runs.some((r) => JSON.parse(r.eventsJson[0] ?? "{}").data?.poison === true);
              const ok = !executor.failing && !poisoned;
              executor.calls.push({ ok, runs });
              if (poisoned) throw new ValidationError("runs[0]: the executor cannot take this run");
              if (!ok) throw new UnavailableError("executor double is failing on purpose");
              return { results: runs.map((r) => ({ runId: r.runId, created: true })) };
            },
          }),
        listPausesStream: (call: ServerDuplexStream<ListPausesStreamRequest, ListPausesStreamResponse>) =>
          serveCallStream<
            ListPausesCall,
            ListPausesAnswer,
            ListPausesStreamRequest,
            ListPausesStreamResponse
          >(call, {
            calls: (req) => req.calls,
            pack: (answers) => ({ answers }),
            empty: { pauses: [] },
            log,
            handle: async ({ queries }) => ({
              pauses: executor.pauses.filter((p) =>
                queries.some((q) => q.environmentId === p.environmentId && q.eventName === p.eventName),
              ),
            }),
          }),
        resumePauses: unary<ResumePausesRequest, ResumePausesResponse>(log, async (req) => {
          executor.resumes.push(req.resumes);
          return { results: req.resumes.map((r) => ({ runId: r.runId, opId: r.opId, resumed: true })) };
        }),
      },
    },
  ]);
}
