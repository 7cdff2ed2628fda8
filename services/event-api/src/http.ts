// The public HTTP API: events in (`POST /e/:key`), app sync (`POST /fn/register`), run reads
// (`GET /v1/...`) and the dashboard placeholder. A factory, so tests drive it with `app.inject`.
// Every error answer has one shape, `{"error": "...", "status": <code>}`, including fastify's own
// (body too large, bad content type). URLs are never logged: they carry event keys.
import type { Clock } from "@stepline/internal/clock";
import { systemClock } from "@stepline/internal/clock";
import {
  ConflictError,
  httpStatusOf,
  NotFoundError,
  publicMessage,
  TooLargeError,
  UnauthenticatedError,
  UnavailableError,
  ValidationError,
} from "@stepline/internal/errors";
import { newId as defaultNewId } from "@stepline/internal/ids";
import type { Logger } from "@stepline/internal/log";
import { SpanKind, withSpan } from "@stepline/internal/telemetry";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import Fastify from "fastify";
import type { AppSyncer } from "./app-sync.js";
import { browserProblem } from "./browser-guard.js";
import { registerDashboard } from "./dashboard.js";
import {
  buildRecords,
  encodeRecord,
  eventIdProblem,
  MAX_REQUEST_BYTES,
  parseJsonBody,
  prepareEvents,
} from "./events.js";
import type { EventSink } from "./producer.js";
import type { AppRegistry, FunctionControl, HistoryReader, RunControl } from "./rest.js";
import { listMetadata, runIdProblem, runView, skipView } from "./rest.js";
import { derivedIds, seededIds, sendTokenOf } from "./send-ids.js";
import type { SessionStore } from "./session-http.js";
import { registerSessions, sessionOf } from "./session-http.js";
import { translateRegister } from "./sync.js";
import type { EnvRef } from "./tenancy.js";
import { registerV1Actions } from "./v1-actions.js";
import { registerV1Routes } from "./v1-routes.js";

/** How requests are mapped to tenants (the tenancy store, or a test's stand-in over real Redis). */
export interface TenantResolver {
  resolveEventKey(key: string): Promise<EnvRef | null>;
  resolveSigningKey(token: string): Promise<EnvRef | null>;
  listEnvironments(accountId: string): Promise<Array<{ id: string; name: string }>>;
}

export interface HttpDeps {
  log: Logger;
  tenants: TenantResolver;
  /** Dev mode's default tenant: unknown or missing keys land here. Null in production. */
  devTenant: EnvRef | null;
  /** Bound to a loopback interface (dev mode then also refuses non-loopback Host headers). */
  loopbackOnly?: boolean;
  /** Which proxies' X-Forwarded-For to believe: none (false), a hop count, or their addresses. */
  trustProxy?: boolean | number | string[];
  sink: EventSink;
  registry: AppRegistry;
  history: HistoryReader;
  runs: RunControl;
  functions: FunctionControl;
  /** Sync by URL (`POST /v1/apps/sync`): a PUT to the app, through the egress policy. */
  apps: AppSyncer;
  /** The built dashboard (index.html and assets), served at `/`; null serves a page saying so. */
  dashboardDir?: string | null;
  /** Shown by the dashboard (history drops older months). */
  historyRetentionDays?: number;
  /** Production mode's sign-in (users and sessions); absent or null: no `/v1/session`. */
  sessions?: SessionStore | null;
  clock?: Clock;
  newId?: () => string;
}

const MAX_PARAM_LENGTH = 1024;
/** Seconds a client is told to wait before retrying a 503. */
const RETRY_AFTER_S = 1;
const REQUEST_LIMIT_TEXT = `the request body exceeds the 3 MiB limit (${MAX_REQUEST_BYTES} bytes); send fewer events per request`;

/** fastify's trustProxy for a hop count (the nearest `hops` proxies), addresses, or none. */
function trustOf(t: HttpDeps["trustProxy"]): boolean | string[] | ((addr: string, hop: number) => boolean) {
  if (typeof t === "number") return (_addr, hop) => hop < t;
  return t ?? false;
}

/** Builds the fastify app (not listening; call `listen` or `inject`). */
export function buildHttpApp(deps: HttpDeps): FastifyInstance {
  const log = deps.log.child({ component: "http" });
  const clock = deps.clock ?? systemClock;
  const newId = deps.newId ?? defaultNewId;
  // No fastify logger: its request logs would carry URLs, and URLs carry event keys.
  // Event ids (user idempotency keys) may be 256 characters, more once URL-encoded.
  const app = Fastify({
    // Behind a proxy, the client's address (the failed sign-in limit is per address) comes from
    // X-Forwarded-For, read only from the proxies named here.
    trustProxy: trustOf(deps.trustProxy),
    bodyLimit: MAX_REQUEST_BYTES,
    logger: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Router errors would echo the path (which may hold an event key); answer without it.
    frameworkErrors: (err, _req, reply) => {
      const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 400;
      const error =
        err.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? `a path segment is too long (at most ${MAX_PARAM_LENGTH} characters)`
          : "malformed request path";
      void (reply as FastifyReply).status(status).send({ error, status });
    },
  });

  // Bodies are parsed here, not by fastify, so every parse error gets our message.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = errorStatus(err);
    if (status >= 500 && !(err instanceof UnavailableError)) {
      log.error({ err, route: req.routeOptions.url, method: req.method }, "request failed");
    }
    // A 503 is a moment's overload or outage: say when to come back (the SDKs and proxies honour it).
    if (status === 503) void reply.header("retry-after", String(RETRY_AFTER_S));
    void reply.status(status).send({ error: errorMessage(err, status), status });
  });
  if (deps.devTenant) {
    // Dev mode's open API is for the developer's own tools, not for pages in their browser.
    const loopbackOnly = deps.loopbackOnly ?? false;
    app.addHook("onRequest", async (req, reply) => {
      const problem = browserProblem(req.headers.origin, req.headers.host, loopbackOnly);
      if (problem) return reply.status(403).send({ error: problem, status: 403 });
    });
  }
  // Before every route, so the session hook sees each /v1 request first.
  if (!deps.devTenant && deps.sessions) {
    registerSessions(app, { store: deps.sessions, log, hasSigningKey: (req) => bearerOf(req) !== "" });
  }
  // Only at debug level: a hook runs on every request, events included, even when it logs nothing.
  if (log.isLevelEnabled("debug")) {
    app.addHook("onResponse", async (req, reply) => {
      log.debug(
        { method: req.method, route: req.routeOptions.url, status: reply.statusCode, ms: reply.elapsedTime },
        "request",
      );
    });
  }

  // Resolves the tenant of a request; a store failure is a 503, not a 500.
  const resolve = async <T>(lookup: () => Promise<T>): Promise<T> => {
    try {
      return await lookup();
    } catch (err) {
      log.warn({ err: (err as Error).message }, "tenancy lookup failed");
      throw new UnavailableError("the tenancy store is unavailable; retry later");
    }
  };

  const bySigningKey = async (req: FastifyRequest, what: string): Promise<EnvRef> => {
    const token = bearerOf(req);
    const ref = token ? await resolve(() => deps.tenants.resolveSigningKey(token)) : null;
    if (ref) return ref;
    if (deps.devTenant) return deps.devTenant;
    throw new UnauthenticatedError(
      token
        ? `unauthorized: the signing key is not known (${what})`
        : `unauthorized: send "Authorization: Bearer <signing key>" (${what})`,
    );
  };

  /**
   * The environment a REST request acts on: a signing key's; else, for a caller who may see an
   * account (a signed-in user's, or dev mode's default tenant), the `X-Stepline-Environment`
   * header's if it is one of that account's environments, or the account's oldest (dev: default).
   */
  const envOf = async (req: FastifyRequest): Promise<EnvRef> => {
    // Only found in production mode, and only for requests without a signing key.
    const session = sessionOf(req);
    if (session) return accountEnv(session.accountId, headerOf(req, "x-stepline-environment"));
    const base = await bySigningKey(req, "the REST API needs a signing key");
    const wanted = headerOf(req, "x-stepline-environment");
    if (!wanted || wanted === base.environmentId || bearerOf(req)) return base;
    return accountEnv(base.accountId, wanted);
  };

  /** A signed-in account's environment: the one `wanted` names, or its oldest. */
  const accountEnv = async (accountId: string, wanted: string): Promise<EnvRef> => {
    const envs = await resolve(async () => deps.tenants.listEnvironments(accountId));
    const env = wanted ? envs.find((e) => e.id === wanted) : envs[0];
    if (env) return { accountId, environmentId: env.id };
    throw new NotFoundError(
      wanted
        ? `environment ${wanted.slice(0, 128)} is not one of this account's`
        : `account ${accountId} has no environments yet: create one with "stepline envs create ${accountId} <name>"`,
    );
  };

  const ingest = async (key: string, req: FastifyRequest, reply: FastifyReply) => {
    let ref = key ? await resolve(() => deps.tenants.resolveEventKey(key)) : null;
    if (!ref && deps.devTenant) ref = deps.devTenant;
    if (!ref) {
      throw new UnauthenticatedError(
        key ? "event key not found" : "event key is required: POST /e/<event key>",
      );
    }
    return ingestAs(ref, req, reply);
  };

  /** Takes the request's events into `ref`'s environment; answers once Kafka acknowledged them. */
  const ingestAs = async (ref: EnvRef, req: FastifyRequest, reply: FastifyReply) => {
    checkContentType(req);
    const receivedAt = clock.now();
    // A step.sendEvent forwards the tracestate of the executor's call: its events get ids derived
    // from that call, so a retried step sends the same ids and starts nothing twice.
    // Otherwise the SDK's id seed makes its own retries of one send idempotent.
    const token = sendTokenOf(headerOf(req, "tracestate"));
    const ids =
      token !== null ? derivedIds(token) : (seededIds(headerOf(req, "x-inngest-event-id-seed")) ?? newId);
    const events = prepareEvents(parseJsonBody(req.body as Buffer | undefined), receivedAt, ids);
    // A caller's own traceparent (an app traced with OpenTelemetry) makes this part of its trace.
    const parent = headerOf(req, "traceparent") || undefined;
    const attributes = { "stepline.environment_id": ref.environmentId, "stepline.events": events.length };
    await withSpan("event.ingest", { parent, kind: SpanKind.SERVER, attributes }, async (span) => {
      const records = buildRecords(ref, events, receivedAt, span.traceParent);
      await deps.sink.produce(records.map((r) => ({ key: r.accountId, value: encodeRecord(r) })));
    });
    return reply.send({ ids: events.map((e) => e.id), status: 200 });
  };

  app.post<{ Params: { key: string } }>("/e/:key", (req, reply) => ingest(req.params.key, req, reply));

  app.post("/e", (req, reply) => ingest(headerOf(req, "x-inngest-event-key"), req, reply));
  app.post("/e/", (req, reply) => ingest(headerOf(req, "x-inngest-event-key"), req, reply));

  app.post("/fn/register", async (req, reply) => {
    const ref = await bySigningKey(req, "sync needs the environment's signing key");
    checkContentType(req);
    const request = translateRegister(parseJsonBody(req.body as Buffer | undefined), ref);
    let modified: boolean;
    try {
      ({ modified } = await deps.registry.syncApp(request));
    } catch (err) {
      if (err instanceof UnavailableError) {
        throw new UnavailableError("the function registry (runner) is unavailable; retry the sync");
      }
      throw err;
    }
    log.info(
      {
        environmentId: ref.environmentId,
        appId: request.appId,
        functions: request.functions.length,
        modified,
      },
      "app synced",
    );
    return reply.send({ status: 200, modified });
  });

  app.get<{ Params: { eventId: string } }>("/v1/events/:eventId/runs", async (req, reply) => {
    const ref = await envOf(req);
    const problem = eventIdProblem(req.params.eventId);
    if (problem) throw new ValidationError(`event id ${problem}`);
    const runs = await historyCall(() => deps.history.listEventRuns(ref.environmentId, req.params.eventId));
    return reply.send({ data: runs.map(runView), metadata: listMetadata(clock.now()) });
  });

  app.get<{ Params: { eventId: string } }>("/v1/events/:eventId/skips", async (req, reply) => {
    const ref = await envOf(req);
    const problem = eventIdProblem(req.params.eventId);
    if (problem) throw new ValidationError(`event id ${problem}`);
    const skips = await historyCall(() => deps.history.listEventSkips(ref.environmentId, req.params.eventId));
    return reply.send({ data: skips.map(skipView), metadata: listMetadata(clock.now()) });
  });

  app.get<{ Params: { runId: string } }>("/v1/runs/:runId", async (req, reply) => {
    const ref = await envOf(req);
    const problem = runIdProblem(req.params.runId);
    if (problem) throw new ValidationError(problem);
    try {
      const run = await historyCall(() => deps.history.getRun(ref.environmentId, req.params.runId));
      return reply.send({ data: runView(run) });
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`run ${req.params.runId} not found`);
      throw err;
    }
  });

  app.delete<{ Params: { runId: string } }>("/v1/runs/:runId", async (req, reply) => {
    const ref = await envOf(req);
    const problem = runIdProblem(req.params.runId);
    if (problem) throw new ValidationError(problem);
    let res: { cancelled: boolean; status: string };
    try {
      res = await deps.runs.cancelRun(ref.environmentId, req.params.runId);
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`run ${req.params.runId} not found`);
      if (err instanceof UnavailableError)
        throw new UnavailableError("the executor is unavailable; retry the cancel");
      throw err;
    }
    if (!res.cancelled) {
      throw new ConflictError(
        `run ${req.params.runId} already ended (${res.status}); only a running run can be cancelled`,
      );
    }
    return reply.send({ data: { run_id: req.params.runId, status: "Cancelled" } });
  });

  // SDK v4 checkpointing: the steps an SDK ran inside one call, saved before it goes on
  // (docs/sdk-protocol.md, "Checkpointing"). 409 tells the SDK its dispatch is stale.
  app.post<{ Params: { runId: string } }>("/v1/checkpoint/:runId/async", async (req, reply) => {
    const ref = await bySigningKey(req, "a checkpoint needs the environment's signing key");
    const problem = runIdProblem(req.params.runId);
    if (problem) throw new ValidationError(problem);
    const body = parseJsonBody(req.body as Buffer | undefined) as {
      steps?: unknown;
      qi_id?: unknown;
      run_id?: unknown;
    } | null;
    if (!body || typeof body !== "object" || !Array.isArray(body.steps)) {
      throw new ValidationError("the body must be a JSON object with `steps`, a list of ops");
    }
    if (body.run_id !== undefined && body.run_id !== req.params.runId) {
      throw new ValidationError("run_id in the body is not the run of the URL");
    }
    try {
      await deps.runs.checkpoint(
        ref.environmentId,
        req.params.runId,
        typeof body.qi_id === "string" ? body.qi_id : "",
        JSON.stringify(body.steps),
      );
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`run ${req.params.runId} not found`);
      if (err instanceof ConflictError) throw new ConflictError(`run ${req.params.runId} has ended`);
      throw err;
    }
    return reply.send({});
  });

  registerV1Routes(app, {
    history: deps.history,
    registry: deps.registry,
    functions: deps.functions,
    clock,
    environmentsOf: (accountId) => resolve(async () => deps.tenants.listEnvironments(accountId)),
    envOf,
    ingestAs,
    historyCall,
    mode: deps.devTenant ? "dev" : "production",
    historyRetentionDays: deps.historyRetentionDays ?? 0,
  });
  registerV1Actions(app, {
    log,
    apps: deps.apps,
    history: deps.history,
    registry: deps.registry,
    runs: deps.runs,
    sink: deps.sink,
    clock,
    newId,
    envOf,
    historyCall,
  });
  registerDashboard(app, deps.dashboardDir ?? null, (req, reply) =>
    reply
      .status(404)
      .send({ error: `no such endpoint: ${req.method} (see the README's REST API)`, status: 404 }),
  );

  return app;
}

async function historyCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof UnavailableError) {
      throw new UnavailableError("run history (the history service) is unavailable; retry later");
    }
    throw err;
  }
}

function headerOf(req: FastifyRequest, name: string): string {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

/** The token of `Authorization: Bearer <token>` (empty when absent or the SDK's dev "undefined"). */
function bearerOf(req: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(headerOf(req, "authorization"));
  const token = m?.[1] ?? "";
  return token === "undefined" || token === "null" ? "" : token;
}

const JSON_TYPES = new Set(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]);

// JSON is accepted as application/json (what the SDK sends), text/plain (fetch's default for a
// string body), curl's form default (`curl -d '{...}'`, the way people try an API) or with no
// content type; the body must still parse as JSON. Anything else is refused.
function checkContentType(req: FastifyRequest): void {
  const type = (headerOf(req, "content-type").split(";")[0] ?? "").trim().toLowerCase();
  if (JSON_TYPES.has(type) || type.endsWith("+json")) return;
  throw new UnsupportedMediaTypeError(
    `unsupported content type "${type}": send JSON with "Content-Type: application/json"`,
  );
}

class UnsupportedMediaTypeError extends ValidationError {
  override name = "UnsupportedMediaTypeError";
}

function errorStatus(err: FastifyError): number {
  if (err instanceof UnsupportedMediaTypeError) return 415;
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") return 413;
  if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return 415;
  const ours = httpStatusOf(err);
  if (ours !== 500) return ours;
  // fastify's own client errors (bad content length, aborted body) keep their 4xx status.
  if (err.code?.startsWith("FST_") && err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return err.statusCode;
  }
  return 500;
}

function errorMessage(err: FastifyError, status: number): string {
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") return REQUEST_LIMIT_TEXT;
  if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return 'invalid content type: send JSON with "Content-Type: application/json"';
  }
  if (err instanceof TooLargeError || err instanceof ValidationError) return err.message;
  if (status < 500 && err.code?.startsWith("FST_")) return err.message;
  return publicMessage(err);
}
