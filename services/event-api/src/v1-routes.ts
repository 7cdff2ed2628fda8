// The REST API the dashboard uses, beyond the SDK's own endpoints: environments, apps, functions
// (pause, resume), events (list, get, send) and runs (list, steps). Every route answers for one
// environment, chosen by `envOf` (a signing key's, or the `X-Stepline-Environment` header among the
// caller's account's). The shapes are documented in the README ("REST API").
import type { Clock } from "@stepline/internal/clock";
import { NotFoundError, ValidationError } from "@stepline/internal/errors";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { eventIdProblem } from "./events.js";
import type { AppRegistry, FunctionControl, HistoryReader } from "./rest.js";
import { listMetadata, runIdProblem, runView } from "./rest.js";
import { signedInAs } from "./session-http.js";
import type { EnvRef } from "./tenancy.js";
import { appView, eventView, functionView, stepView } from "./views.js";

export interface V1Deps {
  history: HistoryReader;
  registry: AppRegistry;
  functions: FunctionControl;
  clock: Clock;
  /** The environments of an account (id and name only). */
  environmentsOf(accountId: string): Promise<Array<{ id: string; name: string }>>;
  /** The environment a request acts on; throws UnauthenticatedError or NotFoundError. */
  envOf(req: FastifyRequest): Promise<EnvRef>;
  /** Takes the request's events into the environment (the same path as `POST /e/:key`). */
  ingestAs(ref: EnvRef, req: FastifyRequest, reply: FastifyReply): Promise<unknown>;
  /** Runs a call to history, turning its outage into a 503 that names it. */
  historyCall<T>(call: () => Promise<T>): Promise<T>;
  mode: "dev" | "production";
  historyRetentionDays: number;
}

const STATUS_BY_NAME: Record<string, RunStatus> = {
  running: RunStatus.RUN_STATUS_RUNNING,
  completed: RunStatus.RUN_STATUS_COMPLETED,
  failed: RunStatus.RUN_STATUS_FAILED,
  cancelled: RunStatus.RUN_STATUS_CANCELLED,
};

export type Query = Record<string, string | undefined>;

/** A page size from `?limit=`: absent means `fallback`, else an integer 1..max. */
export function limitOf(q: Query, fallback: number, max: number): number {
  if (q.limit === undefined || q.limit === "") return fallback;
  const n = Number(q.limit);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new ValidationError(`limit must be an integer from 1 to ${max}`);
  return n;
}

/** A time bound from a query parameter: ISO-8601 or epoch ms; 0 when absent. */
export function timeOf(q: Query, name: string): number {
  const v = q[name];
  if (v === undefined || v === "") return 0;
  const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(ms) || ms < 0) {
    throw new ValidationError(
      `${name} must be an ISO-8601 time or epoch milliseconds, got "${v.slice(0, 64)}"`,
    );
  }
  return ms;
}

export function statusesOf(q: Query): RunStatus[] {
  if (!q.status) return [];
  return q.status.split(",").map((name) => {
    const status = STATUS_BY_NAME[name.trim().toLowerCase()];
    if (status === undefined) {
      throw new ValidationError(
        `status must be a comma-separated list of Running, Completed, Failed, Cancelled; got "${name.slice(0, 32)}"`,
      );
    }
    return status;
  });
}

export function checkEventId(id: string): string {
  const problem = eventIdProblem(id);
  if (problem) throw new ValidationError(`event id ${problem}`);
  return id;
}

/** A function id from the path: it must be one of the environment's functions. */
export async function functionOf(deps: { registry: AppRegistry }, ref: EnvRef, id: string) {
  const fns = await deps.registry.listFunctions(ref.environmentId);
  const fn = fns.find((f) => f.config?.id === id);
  if (!fn) throw new NotFoundError(`function ${id.slice(0, 200)} is not synced in this environment`);
  return fn;
}

export function registerV1Routes(app: FastifyInstance, deps: V1Deps): void {
  const { history, registry } = deps;
  const meta = () => listMetadata(deps.clock.now());

  app.get("/v1/settings", async (req, reply) =>
    reply.send({
      data: {
        mode: deps.mode,
        history_retention_days: deps.historyRetentionDays,
        signed_in_as: signedInAs(req),
      },
    }),
  );

  app.get("/v1/environments", async (req, reply) => {
    const ref = await deps.envOf(req);
    const envs = await deps.environmentsOf(ref.accountId);
    return reply.send({
      data: envs.map((e) => ({ id: e.id, name: e.name, account_id: ref.accountId })),
      current: ref.environmentId,
    });
  });

  app.get("/v1/apps", async (req, reply) => {
    const ref = await deps.envOf(req);
    return reply.send({ data: (await registry.listApps(ref.environmentId)).map(appView), metadata: meta() });
  });

  app.get("/v1/functions", async (req, reply) => {
    const ref = await deps.envOf(req);
    const fns = await registry.listFunctions(ref.environmentId);
    const ids = fns.map((f) => f.config?.id ?? "");
    const [paused, stats] = await Promise.all([
      deps.functions.pausedOf(ref.accountId, ref.environmentId, ids),
      deps.historyCall(() => history.functionStats(ref.environmentId)),
    ]);
    const byId = new Map(stats.map((st) => [st.functionId, st]));
    const data = fns.map((f) => {
      const id = f.config?.id ?? "";
      return functionView(f, paused.has(id), byId.get(id));
    });
    return reply.send({ data, metadata: meta() });
  });

  app.get<{ Params: { id: string }; Querystring: Query }>("/v1/functions/:id/metrics", async (req, reply) => {
    const ref = await deps.envOf(req);
    await functionOf(deps, ref, req.params.id);
    const q = req.query;
    const toMs = timeOf(q, "to") || deps.clock.now();
    const fromMs = timeOf(q, "from") || toMs - 3_600_000;
    const bucket = q.bucket === undefined || q.bucket === "" ? 60 : Number(q.bucket);
    if (!Number.isInteger(bucket) || bucket < 1 || bucket > 86_400) {
      throw new ValidationError("bucket must be a whole number of seconds from 1 to 86400");
    }
    if (toMs <= fromMs) throw new ValidationError("to must be after from");
    if ((toMs - fromMs) / (bucket * 1000) > 10_000) {
      throw new ValidationError("the range holds more than 10,000 buckets: use a wider bucket");
    }
    const points = await deps.historyCall(() =>
      history.functionMetrics({
        environmentId: ref.environmentId,
        functionId: req.params.id,
        fromMs,
        toMs,
        bucketSeconds: bucket,
      }),
    );
    const data = {
      bucket_seconds: bucket,
      points: points.map((p) => ({
        t: new Date(p.atMs).toISOString(),
        runs: p.runs,
        failed: p.failed,
        p50_ms: p.p50Ms,
        p99_ms: p.p99Ms,
      })),
    };
    return reply.send({ data });
  });

  for (const [action, paused] of [
    ["pause", true],
    ["resume", false],
  ] as const) {
    app.post<{ Params: { id: string } }>(`/v1/functions/:id/${action}`, async (req, reply) => {
      const ref = await deps.envOf(req);
      await functionOf(deps, ref, req.params.id);
      await deps.functions.setPaused(ref.accountId, ref.environmentId, req.params.id, paused);
      return reply.send({ data: { id: req.params.id, paused } });
    });
  }

  app.get<{ Querystring: Query }>("/v1/events", async (req, reply) => {
    const ref = await deps.envOf(req);
    const q = req.query;
    const page = await deps.historyCall(() =>
      history.listEvents({
        environmentId: ref.environmentId,
        name: q.name ?? "",
        receivedAfterMs: timeOf(q, "received_after"),
        receivedBeforeMs: timeOf(q, "received_before"),
        limit: limitOf(q, 20, 100),
        cursor: q.cursor ?? "",
      }),
    );
    return reply.send({
      data: page.events.map(eventView),
      metadata: meta(),
      cursor: page.nextCursor || null,
    });
  });

  app.post("/v1/events", async (req, reply) => deps.ingestAs(await deps.envOf(req), req, reply));

  app.get<{ Params: { eventId: string } }>("/v1/events/:eventId", async (req, reply) => {
    const ref = await deps.envOf(req);
    const id = checkEventId(req.params.eventId);
    try {
      return reply.send({
        data: eventView(await deps.historyCall(() => history.getEvent(ref.environmentId, id))),
      });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`event ${id.slice(0, 200)} not found`);
      throw err;
    }
  });

  app.get<{ Querystring: Query }>("/v1/runs", async (req, reply) => {
    const ref = await deps.envOf(req);
    const q = req.query;
    const page = await deps.historyCall(() =>
      history.listRuns({
        environmentId: ref.environmentId,
        statuses: statusesOf(q),
        functionId: q.function_id ?? "",
        eventId: q.event_id ? checkEventId(q.event_id) : "",
        startedAfterMs: timeOf(q, "started_after"),
        startedBeforeMs: timeOf(q, "started_before"),
        limit: limitOf(q, 50, 200),
        cursor: q.cursor ?? "",
      }),
    );
    return reply.send({ data: page.runs.map(runView), metadata: meta(), cursor: page.nextCursor || null });
  });

  app.get<{ Params: { runId: string } }>("/v1/runs/:runId/steps", async (req, reply) => {
    const ref = await deps.envOf(req);
    const problem = runIdProblem(req.params.runId);
    if (problem) throw new ValidationError(problem);
    const steps = await deps.historyCall(() => history.listRunSteps(ref.environmentId, req.params.runId));
    return reply.send({ data: steps.map(stepView), metadata: meta() });
  });
}
