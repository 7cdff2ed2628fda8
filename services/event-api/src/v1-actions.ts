// What the dashboard does beyond reading: replay a run (a new run of its function with its trigger
// event), cancel or replay every run a filter matches, invoke a function with a payload, and sync
// an app by its URL. Documented in the README ("REST API").
import type { Clock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError, UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import { retry } from "@stepline/internal/retry";
import type { Run } from "@stepline/proto/stepline/history/v1/history_service";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AppSyncer } from "./app-sync.js";
import { buildRecords, encodeRecord, parseJsonBody, prepareEvents } from "./events.js";
import type { EventSink } from "./producer.js";
import type { AppRegistry, HistoryReader, RunControl } from "./rest.js";
import { runIdProblem } from "./rest.js";
import type { EnvRef } from "./tenancy.js";
import type { Query } from "./v1-routes.js";
import { checkEventId, functionOf, statusesOf, timeOf } from "./v1-routes.js";

export interface V1ActionDeps {
  log: Logger;
  apps: AppSyncer;
  history: HistoryReader;
  registry: AppRegistry;
  runs: RunControl;
  sink: EventSink;
  clock: Clock;
  newId: () => string;
  envOf(req: FastifyRequest): Promise<EnvRef>;
  historyCall<T>(call: () => Promise<T>): Promise<T>;
}

/** The most runs one bulk request acts on; the answer says when the filter matched more. */
export const BULK_MAX_RUNS = 1000;
/** How long a replay waits for history to have its new run before it answers anyway. */
const REPLAY_VISIBLE_WAIT_MS = 10_000;
/** Runs cancelled or replayed at once within a bulk request. */
const BULK_PARALLEL = 8;

const INVOKED = "inngest/function.invoked";

/** Runs `each` over `items`, `BULK_PARALLEL` at a time; counts the ones that returned true. */
async function forEachLimited<T>(items: T[], each: (item: T) => Promise<boolean>): Promise<number> {
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      if (await each(item)) done++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(BULK_PARALLEL, items.length) }, worker));
  return done;
}

function bodyObject(req: FastifyRequest): Record<string, unknown> {
  const raw = req.body as Buffer | undefined;
  const body = raw && raw.length > 0 ? parseJsonBody(raw) : {};
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ValidationError("the body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** A bulk request's filter, the same fields as GET /v1/runs's query (strings). */
function filterOf(body: Record<string, unknown>): Query {
  const q: Query = {};
  for (const k of ["status", "function_id", "event_id", "started_after", "started_before"]) {
    const v = body[k];
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string" && typeof v !== "number") throw new ValidationError(`${k} must be a string`);
    q[k] = String(v);
  }
  return q;
}

export function registerV1Actions(app: FastifyInstance, deps: V1ActionDeps): void {
  const { history, registry } = deps;

  /** A new run of `run`'s function with its trigger event, as history has it. */
  const replay = async (ref: EnvRef, run: Run): Promise<string> => {
    let eventJson: string;
    try {
      eventJson = (await deps.historyCall(() => history.getEvent(ref.environmentId, run.eventId))).eventJson;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      throw new ConflictError(
        `run ${run.runId} cannot be replayed: its trigger event ${run.eventId || "(none)"} is not in history (a cron or batch run, or one older than the retention)`,
      );
    }
    return registry.startRun({
      environmentId: ref.environmentId,
      functionId: run.functionId,
      eventsJson: [eventJson],
      requestId: deps.newId(),
    });
  };

  /** The runs a filter matches, newest first, at most BULK_MAX_RUNS (`more` when there were others). */
  const matching = async (
    ref: EnvRef,
    q: Query,
    only?: RunStatus[],
  ): Promise<{ runs: Run[]; more: boolean }> => {
    let statuses = statusesOf(q);
    if (only) statuses = statuses.length === 0 ? only : statuses.filter((s) => only.includes(s));
    if (only && statuses.length === 0) return { runs: [], more: false };
    const runs: Run[] = [];
    let cursor = "";
    do {
      const page = await deps.historyCall(() =>
        history.listRuns({
          environmentId: ref.environmentId,
          statuses,
          functionId: q.function_id ?? "",
          eventId: q.event_id ? checkEventId(q.event_id) : "",
          startedAfterMs: timeOf(q, "started_after"),
          startedBeforeMs: timeOf(q, "started_before"),
          limit: 200,
          cursor,
        }),
      );
      runs.push(...page.runs);
      cursor = page.nextCursor;
    } while (cursor && runs.length < BULK_MAX_RUNS);
    return { runs: runs.slice(0, BULK_MAX_RUNS), more: runs.length > BULK_MAX_RUNS || cursor !== "" };
  };

  app.post<{ Params: { runId: string } }>("/v1/runs/:runId/replay", async (req, reply) => {
    const ref = await deps.envOf(req);
    const problem = runIdProblem(req.params.runId);
    if (problem) throw new ValidationError(problem);
    let run: Run;
    try {
      run = await deps.historyCall(() => history.getRun(ref.environmentId, req.params.runId));
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`run ${req.params.runId} not found`);
      throw err;
    }
    const runId = await replay(ref, run);
    // Read-your-writes: the caller (the dashboard) opens the new run next, so answer once history
    // has it (a flush away), or after REPLAY_VISIBLE_WAIT_MS without it.
    await retry(
      async () => {
        await history.getRun(ref.environmentId, runId);
      },
      {
        // Not finding it yet is the expected case: no warning per attempt.
        log: deps.log.child({ component: "replay" }, { level: "error" }),
        what: "the replayed run in history",
        backoff: { firstMs: 50, maxMs: 500 },
        signal: AbortSignal.timeout(REPLAY_VISIBLE_WAIT_MS),
        isTransient: (err) => err instanceof NotFoundError || err instanceof UnavailableError,
      },
    );
    return reply.send({ data: { run_id: runId, event_id: run.eventId } });
  });

  app.post("/v1/runs/cancel", async (req, reply) => {
    const ref = await deps.envOf(req);
    const { runs, more } = await matching(ref, filterOf(bodyObject(req)), [RunStatus.RUN_STATUS_RUNNING]);
    const cancelled = await forEachLimited(runs, async (run) => {
      try {
        return (await deps.runs.cancelRun(ref.environmentId, run.runId)).cancelled;
      } catch (err) {
        if (err instanceof NotFoundError) return false; // ended and expired meanwhile
        throw err;
      }
    });
    return reply.send({ data: { matched: runs.length, cancelled, more } });
  });

  app.post("/v1/runs/replay", async (req, reply) => {
    const ref = await deps.envOf(req);
    const { runs, more } = await matching(ref, filterOf(bodyObject(req)));
    const failed: Array<{ run_id: string; error: string }> = [];
    const replayed = await forEachLimited(runs, async (run) => {
      try {
        await replay(ref, run);
        return true;
      } catch (err) {
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
        failed.push({ run_id: run.runId, error: err.message });
        return false;
      }
    });
    return reply.send({ data: { matched: runs.length, replayed, more, failed } });
  });

  app.post("/v1/apps/sync", async (req, reply) => {
    await deps.envOf(req);
    const url = bodyObject(req).url;
    if (typeof url !== "string" || !url) throw new ValidationError("url is required: the app's serve URL");
    const answer = await deps.apps.sync(url);
    return reply.send({ data: { url, modified: answer.modified, message: answer.message } });
  });

  app.post<{ Params: { id: string } }>("/v1/functions/:id/invoke", async (req, reply) => {
    const ref = await deps.envOf(req);
    await functionOf(deps, ref, req.params.id);
    const body = bodyObject(req);
    const data = body.data ?? {};
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      throw new ValidationError("data must be a JSON object");
    }
    // The event step.invoke sends: the runner starts the function it names, whatever its triggers.
    const event = { name: INVOKED, data: { ...data, _inngest: { fn_id: req.params.id } }, user: body.user };
    const now = deps.clock.now();
    const [prepared] = prepareEvents(event, now, deps.newId, true);
    if (!prepared) throw new Error("prepareEvents returned no event");
    const records = buildRecords(ref, [prepared], now, "");
    await deps.sink.produce(records.map((r) => ({ key: r.accountId, value: encodeRecord(r) })));
    return reply.send({ data: { event_id: prepared.id, run_id: null } });
  });
}
