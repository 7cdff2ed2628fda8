// The REST API's view of other services: reads through HistoryService, the registry through
// RunnerService, pausing through QueueService, cancellation and checkpoints through
// ExecutorService; and the JSON shapes users and the SDK read (`GET /v1/runs/:runId`, ...).
// Adapters here are thin, so routes and their tests depend on these interfaces only.
import { CallStream } from "@stepline/internal/call-stream";
import { callUnary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  CheckpointCall,
  CheckpointResult,
  CheckpointsRequest,
  CheckpointsResponse,
  ExecutorServiceClient,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type {
  Event,
  FunctionStats,
  GetFunctionMetricsRequest,
  HistoryServiceClient,
  ListEventsRequest,
  ListRunsRequest,
  MetricsPoint,
  Run,
  Skip,
  Step,
} from "@stepline/proto/stepline/history/v1/history_service";
import type { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import type {
  App,
  RegisteredFunction,
  RunnerServiceClient,
  StartRunRequest,
  SyncAppRequest,
  SyncAppResponse,
} from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunStatus, SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import { parseOrRaw } from "./views.js";

/** Reads of past and current runs, scoped to one environment. */
export interface HistoryReader {
  /** One run; NotFoundError when the environment has no such run. */
  getRun(environmentId: string, runId: string): Promise<Run>;
  /** The runs an event started, oldest first. */
  listEventRuns(environmentId: string, eventId: string): Promise<Run[]>;
  /** The functions an event matched but started no run of, and why. */
  listEventSkips(environmentId: string, eventId: string): Promise<Skip[]>;
  /** A page of runs, newest first (ValidationError for a bad filter or cursor). */
  listRuns(req: ListRunsRequest): Promise<{ runs: Run[]; nextCursor: string }>;
  /** A run's step outcomes, oldest first. */
  listRunSteps(environmentId: string, runId: string): Promise<Step[]>;
  /** A page of events, newest first. */
  listEvents(req: ListEventsRequest): Promise<{ events: Event[]; nextCursor: string }>;
  /** One event; NotFoundError when the environment has none with this id. */
  getEvent(environmentId: string, eventId: string): Promise<Event>;
  /** Each function's runs that ended in the last hour and day, and their failures. */
  functionStats(environmentId: string): Promise<FunctionStats[]>;
  /** One function's ended runs per bucket (ValidationError for a bad range). */
  functionMetrics(req: GetFunctionMetricsRequest): Promise<MetricsPoint[]>;
}

/** Cancelling runs and saving an SDK's checkpoints (ExecutorService), scoped to one environment. */
export interface RunControl {
  /** Cancels a run; NotFoundError when the environment has no such live or recent run. */
  cancelRun(environmentId: string, runId: string): Promise<{ cancelled: boolean; status: string }>;
  /**
   * Saves the steps an SDK ran inside a call (`steps`: its ops as JSON). NotFoundError for an
   * unknown run, ConflictError for one that ended (a stale dispatch), ValidationError for bad ops.
   */
  checkpoint(environmentId: string, runId: string, queueItemId: string, stepsJson: string): Promise<void>;
}

/** RunControl over ExecutorService gRPC: cancels unary, checkpoints on one call stream. */
export function runControlOverGrpc(
  client: ExecutorServiceClient,
  deadlineMs: number,
  log: Logger,
): RunControl & { close(): Promise<void> } {
  const checkpoints = new CallStream<
    CheckpointCall,
    CheckpointResult,
    CheckpointsRequest,
    CheckpointsResponse
  >({
    open: () => client.checkpoints(),
    pack: (calls) => ({ calls }),
    unpack: (res) => res.results,
    deadlineMs,
    sizeOf: (c) => c.stepsJson.length,
    what: "the checkpoint",
    peer: "the executor",
    log,
  });
  return {
    cancelRun: (environmentId, runId) =>
      callUnary(client.cancelRun.bind(client), { environmentId, runId }, deadlineMs),
    checkpoint: async (environmentId, runId, queueItemId, stepsJson) => {
      await checkpoints.call({ environmentId, runId, queueItemId, stepsJson });
    },
    close: () => checkpoints.close(),
  };
}

/** The app registry: /fn/register writes it, the REST API reads it. */
export interface AppRegistry {
  syncApp(req: SyncAppRequest): Promise<SyncAppResponse>;
  listApps(environmentId: string): Promise<App[]>;
  listFunctions(environmentId: string): Promise<RegisteredFunction[]>;
  /** Starts a run of a function with these events (a replay); NotFoundError when it is not synced. */
  startRun(req: StartRunRequest): Promise<string>;
}

/** Pausing functions (QueueService: a paused function's items stay queued, in order). */
export interface FunctionControl {
  /** Which of the environment's `functionIds` are paused now. */
  pausedOf(accountId: string, environmentId: string, functionIds: string[]): Promise<Set<string>>;
  setPaused(accountId: string, environmentId: string, functionId: string, paused: boolean): Promise<void>;
}

/** FunctionControl over QueueService gRPC. */
export function functionControlOverGrpc(client: QueueServiceClient, deadlineMs: number): FunctionControl {
  return {
    async pausedOf(accountId, environmentId, functionIds) {
      if (functionIds.length === 0) return new Set();
      const functions = functionIds.map((functionId) => ({ accountId, environmentId, functionId }));
      const res = await callUnary(client.getFunctionPauses.bind(client), { functions }, deadlineMs);
      return new Set(res.functions.filter((f) => f.paused).map((f) => f.function?.functionId ?? ""));
    },
    async setPaused(accountId, environmentId, functionId, paused) {
      const req = { function: { accountId, environmentId, functionId } };
      if (paused) await callUnary(client.pauseFunction.bind(client), req, deadlineMs);
      else await callUnary(client.resumeFunction.bind(client), req, deadlineMs);
    },
  };
}

/** A HistoryReader over HistoryService gRPC. */
export function historyOverGrpc(client: HistoryServiceClient, deadlineMs: number): HistoryReader {
  return {
    async getRun(environmentId, runId) {
      const res = await callUnary(client.getRun.bind(client), { environmentId, runId }, deadlineMs);
      if (!res.run) throw new Error("GetRun answered without a run");
      return res.run;
    },
    async listEventRuns(environmentId, eventId) {
      return (await callUnary(client.listEventRuns.bind(client), { environmentId, eventId }, deadlineMs))
        .runs;
    },
    async listEventSkips(environmentId, eventId) {
      return (await callUnary(client.listEventSkips.bind(client), { environmentId, eventId }, deadlineMs))
        .skips;
    },
    listRuns: (req) => callUnary(client.listRuns.bind(client), req, deadlineMs),
    async listRunSteps(environmentId, runId) {
      return (await callUnary(client.listRunSteps.bind(client), { environmentId, runId }, deadlineMs)).steps;
    },
    listEvents: (req) => callUnary(client.listEvents.bind(client), req, deadlineMs),
    async getEvent(environmentId, eventId) {
      const res = await callUnary(client.getEvent.bind(client), { environmentId, eventId }, deadlineMs);
      if (!res.event) throw new Error("GetEvent answered without an event");
      return res.event;
    },
    async functionStats(environmentId) {
      return (await callUnary(client.getFunctionStats.bind(client), { environmentId, nowMs: 0 }, deadlineMs))
        .functions;
    },
    async functionMetrics(req) {
      return (await callUnary(client.getFunctionMetrics.bind(client), req, deadlineMs)).points;
    },
  };
}

/** An AppRegistry over RunnerService gRPC. */
export function registryOverGrpc(client: RunnerServiceClient, deadlineMs: number): AppRegistry {
  return {
    syncApp: (req) => callUnary(client.syncApp.bind(client), req, deadlineMs),
    async listApps(environmentId) {
      return (await callUnary(client.listApps.bind(client), { environmentId }, deadlineMs)).apps;
    },
    async listFunctions(environmentId) {
      return (await callUnary(client.listFunctions.bind(client), { environmentId }, deadlineMs)).functions;
    },
    async startRun(req) {
      return (await callUnary(client.startRun.bind(client), req, deadlineMs)).runId;
    },
  };
}

/** A run as the REST API shows it. */
export interface RunView {
  run_id: string;
  event_id: string;
  function_id: string;
  status: "Running" | "Completed" | "Failed" | "Cancelled";
  run_started_at: string;
  ended_at: string | null;
  output: unknown;
  error?: unknown;
}

const STATUS: Record<number, RunView["status"]> = {
  [RunStatus.RUN_STATUS_RUNNING]: "Running",
  [RunStatus.RUN_STATUS_COMPLETED]: "Completed",
  [RunStatus.RUN_STATUS_FAILED]: "Failed",
  [RunStatus.RUN_STATUS_CANCELLED]: "Cancelled",
};

/** Translates a HistoryService run into the REST shape. */
export function runView(run: Run): RunView {
  const view: RunView = {
    run_id: run.runId,
    event_id: run.eventId,
    function_id: run.functionId,
    // A run history knows of but whose status is unset has started and not ended.
    status: STATUS[run.status] ?? "Running",
    run_started_at: new Date(run.startedAtMs).toISOString(),
    ended_at: run.endedAtMs > 0 ? new Date(run.endedAtMs).toISOString() : null,
    output: parseOrRaw(run.outputJson) ?? null,
  };
  const error = parseOrRaw(run.errorJson);
  if (error !== undefined) view.error = error;
  return view;
}

/** A function an event matched without starting a run of it, as the REST API shows it. */
export interface SkipView {
  function_id: string;
  reason: "rate_limited" | "idempotent" | "singleton" | "refused" | "unknown";
  skipped_at: string;
  detail: string;
}

const REASON: Record<number, SkipView["reason"]> = {
  [SkipReason.SKIP_REASON_RATE_LIMITED]: "rate_limited",
  [SkipReason.SKIP_REASON_IDEMPOTENT]: "idempotent",
  [SkipReason.SKIP_REASON_SINGLETON]: "singleton",
  [SkipReason.SKIP_REASON_REFUSED]: "refused",
};

export function skipView(skip: Skip): SkipView {
  return {
    function_id: skip.functionId,
    reason: REASON[skip.reason] ?? "unknown",
    skipped_at: new Date(skip.atMs).toISOString(),
    detail: skip.detail,
  };
}

/** The `metadata` object of list answers. */
export function listMetadata(nowMs: number): { fetched_at: string; cached_until: null } {
  return { fetched_at: new Date(nowMs).toISOString(), cached_until: null };
}

const RUN_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Why `id` is not a usable run id (null when it is). */
export function runIdProblem(id: string): string | null {
  if (!id) return "run id is required";
  if (!RUN_ID.test(id)) return "run id must be 1 to 128 of letters, digits, '.', '_', ':' and '-'";
  return null;
}
