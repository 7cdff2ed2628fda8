// HistoryService gRPC handlers: proto <-> domain translation only; the store validates and reads.
import { NotFoundError, ValidationError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  Event,
  GetEventRequest,
  GetEventResponse,
  GetFunctionMetricsRequest,
  GetFunctionMetricsResponse,
  GetFunctionStatsRequest,
  GetFunctionStatsResponse,
  GetRunRequest,
  GetRunResponse,
  HistoryServiceServer,
  ListEventRunsRequest,
  ListEventRunsResponse,
  ListEventSkipsRequest,
  ListEventSkipsResponse,
  ListEventsRequest,
  ListEventsResponse,
  ListRunStepsRequest,
  ListRunStepsResponse,
  ListRunsRequest,
  ListRunsResponse,
  Run,
} from "@stepline/proto/stepline/history/v1/history_service";
import type { EventView, HistoryStore, RunView } from "./store.js";

/** A page size: 0 means `fallback`; anything else must be 1..max. */
function pageSize(limit: number, fallback: number, max: number): number {
  if (limit === 0) return fallback;
  if (limit < 1 || limit > max) throw new ValidationError(`limit must be 1..${max}`);
  return limit;
}

function toEvent(v: EventView): Event {
  return { eventId: v.eventId, name: v.name, receivedAtMs: v.receivedAtMs, eventJson: v.eventJson };
}

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
    listRuns: unary(log, async (req: ListRunsRequest): Promise<ListRunsResponse> => {
      const { runs, nextCursor } = await store.listRuns({
        environmentId: req.environmentId,
        statuses: req.statuses,
        functionId: req.functionId,
        eventId: req.eventId,
        startedAfterMs: req.startedAfterMs,
        startedBeforeMs: req.startedBeforeMs,
        limit: pageSize(req.limit, 50, 200),
        cursor: req.cursor,
      });
      return { runs: runs.map(toRun), nextCursor };
    }),
    listRunSteps: unary(log, async (req: ListRunStepsRequest): Promise<ListRunStepsResponse> => {
      return { steps: await store.listSteps(req.environmentId, req.runId) };
    }),
    listEvents: unary(log, async (req: ListEventsRequest): Promise<ListEventsResponse> => {
      const { events, nextCursor } = await store.listEvents({
        environmentId: req.environmentId,
        name: req.name,
        receivedAfterMs: req.receivedAfterMs,
        receivedBeforeMs: req.receivedBeforeMs,
        limit: pageSize(req.limit, 20, 100),
        cursor: req.cursor,
      });
      return { events: events.map(toEvent), nextCursor };
    }),
    getFunctionStats: unary(log, async (req: GetFunctionStatsRequest): Promise<GetFunctionStatsResponse> => {
      return { functions: await store.functionStats(req.environmentId, req.nowMs || Date.now()) };
    }),
    getFunctionMetrics: unary(
      log,
      async (req: GetFunctionMetricsRequest): Promise<GetFunctionMetricsResponse> => {
        if (req.bucketSeconds < 1 || req.bucketSeconds > 86_400) {
          throw new ValidationError("bucket_seconds must be 1..86400");
        }
        if (req.toMs <= req.fromMs) throw new ValidationError("to must be after from");
        if ((req.toMs - req.fromMs) / (req.bucketSeconds * 1000) > 10_000) {
          throw new ValidationError("the range holds more than 10,000 buckets: use wider buckets");
        }
        if (!req.functionId) throw new ValidationError("function_id is required");
        return { points: await store.functionMetrics(req) };
      },
    ),
    getEvent: unary(log, async (req: GetEventRequest): Promise<GetEventResponse> => {
      const event = await store.getEvent(req.environmentId, req.eventId);
      if (!event) throw new NotFoundError(`event ${req.eventId} not found`);
      return { event: toEvent(event) };
    }),
  };
}
