// HistoryService gRPC handlers: proto <-> domain translation only; the store validates and reads.
import { NotFoundError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  GetRunRequest,
  GetRunResponse,
  HistoryServiceServer,
  ListEventRunsRequest,
  ListEventRunsResponse,
  ListEventSkipsRequest,
  ListEventSkipsResponse,
  Run,
} from "@stepline/proto/stepline/history/v1/history_service";
import type { HistoryStore, RunView } from "./store.js";

function toRun(v: RunView): Run {
  return {
    runId: v.runId,
    accountId: v.accountId,
    environmentId: v.environmentId,
    functionId: v.functionId,
    eventId: v.eventId,
    status: v.status,
    startedAtMs: v.startedAtMs,
    endedAtMs: v.endedAtMs,
    outputJson: v.outputJson,
    errorJson: v.errorJson,
  };
}

/** The HistoryService implementation over `store`. */
export function historyService(store: HistoryStore, log: Logger): HistoryServiceServer {
  return {
    getRun: unary(log, async (req: GetRunRequest): Promise<GetRunResponse> => {
      const run = await store.getRun(req.environmentId, req.runId);
      if (!run) throw new NotFoundError(`run ${req.runId} not found`);
      return { run: toRun(run) };
    }),
    listEventRuns: unary(log, async (req: ListEventRunsRequest): Promise<ListEventRunsResponse> => {
      const runs = await store.listEventRuns(req.environmentId, req.eventId);
      return { runs: runs.map(toRun) };
    }),
    listEventSkips: unary(log, async (req: ListEventSkipsRequest): Promise<ListEventSkipsResponse> => {
      return { skips: await store.listEventSkips(req.environmentId, req.eventId) };
    }),
  };
}
