// RunnerService handlers: proto <-> domain translation only.
import { ValidationError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  FireBatchRequest,
  FireBatchResponse,
  FireCronRequest,
  FireCronResponse,
  FireDebounceRequest,
  FireDebounceResponse,
  FunctionConfig,
  GetFlowLimitsRequest,
  GetFlowLimitsResponse,
  ListAppsRequest,
  ListAppsResponse,
  ListFunctionsRequest,
  ListFunctionsResponse,
  StartRunRequest,
  StartRunResponse,
  SyncAppRequest,
  SyncAppResponse,
} from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunnerServiceService } from "@stepline/proto/stepline/runner/v1/runner_service";
import type { Buffers } from "./buffers.js";
import type { Crons } from "./crons.js";
import { flowLimits } from "./flow.js";
import type { AppSync, FunctionDef } from "./model.js";
import type { Registry } from "./registry.js";
import type { Replays } from "./replays.js";
import { isAppId, isEnvironmentId, validateSync } from "./validate.js";

const MAX_LIMITS_PER_CALL = 10_000;

/** The RunnerService definition and implementation, for startGrpcServer. */
export function runnerService(
  log: Logger,
  registry: Registry,
  crons: Crons,
  buffers: Buffers,
  replays: Replays,
) {
  return {
    definition: RunnerServiceService,
    implementation: {
      syncApp: unary<SyncAppRequest, SyncAppResponse>(log, async (req) => {
        let sync: AppSync;
        let modified: boolean;
        try {
          sync = validateSync(req);
          ({ modified } = await registry.syncApp(sync));
        } catch (err) {
          // A refused sync is shown in the app list, under the app id it named (when it is usable).
          if (err instanceof ValidationError && isEnvironmentId(req.environmentId) && isAppId(req.appId)) {
            await registry.recordSync(req.environmentId, req.appId, {
              atMs: Date.now(),
              url: req.url.slice(0, 2048),
              error: err.message,
            });
          }
          throw err;
        }
        await registry.recordSync(sync.environmentId, sync.appId, {
          atMs: Date.now(),
          url: sync.url,
          error: "",
        });
        // Every sync (changed or not) arms its crons: the next tick's item collapses if it exists,
        // so a sync retried after a failure here still arms them.
        await crons.arm(sync);
        log.info(
          {
            environmentId: sync.environmentId,
            appId: sync.appId,
            functions: sync.functions.length,
            modified,
          },
          "app synced",
        );
        return { modified };
      }),
      fireCron: unary<FireCronRequest, FireCronResponse>(log, (req) => crons.fire(req)),
      fireDebounce: unary<FireDebounceRequest, FireDebounceResponse>(log, (req) => buffers.fireDebounce(req)),
      fireBatch: unary<FireBatchRequest, FireBatchResponse>(log, (req) => buffers.fireBatch(req)),
      startRun: unary<StartRunRequest, StartRunResponse>(log, (req) => replays.start(req)),
      getFlowLimits: unary<GetFlowLimitsRequest, GetFlowLimitsResponse>(log, async (req) => {
        if (req.functions.length > MAX_LIMITS_PER_CALL) {
          throw new ValidationError(`at most ${MAX_LIMITS_PER_CALL} functions per call`);
        }
        // An entry no registry can hold is simply not found: it must not fail the others.
        const valid = req.functions.filter(
          (f) => f.accountId && isEnvironmentId(f.environmentId) && f.functionId,
        );
        const found = await registry.getMany(valid);
        const byRef = new Map(valid.map((f, i) => [f, found[i]]));
        return {
          functions: req.functions.map((f) => {
            const fn = byRef.get(f);
            return fn
              ? { function: f, found: true, ...flowLimits(fn.fn) }
              : { function: f, found: false, concurrency: [], throttle: undefined };
          }),
        };
      }),
      listApps: unary<ListAppsRequest, ListAppsResponse>(log, async (req) => {
        if (!isEnvironmentId(req.environmentId)) {
          throw new ValidationError("environment_id must be 1-128 characters of [A-Za-z0-9._-]");
        }
        return { apps: await registry.listApps(req.environmentId) };
      }),
      listFunctions: unary<ListFunctionsRequest, ListFunctionsResponse>(log, async (req) => {
        if (!isEnvironmentId(req.environmentId)) {
          throw new ValidationError("environment_id must be 1-128 characters of [A-Za-z0-9._-]");
        }
        const fns = await registry.list(req.environmentId);
        return {
          functions: fns.map((f) => ({ appId: f.appId, config: toProto(f.fn), version: f.fn.version })),
        };
      }),
    },
  };
}

function toProto(fn: FunctionDef): FunctionConfig {
  return {
    id: fn.id,
    name: fn.name,
    triggers: fn.triggers.map((t) =>
      t.kind === "event"
        ? { event: t.event, expression: t.expression, cron: "" }
        : { event: "", expression: "", cron: t.cron },
    ),
    url: fn.url,
    retries: fn.retries,
    rawJson: fn.rawJson,
  };
}
