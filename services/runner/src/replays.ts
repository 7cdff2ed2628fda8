// StartRun: a run of a synced function with events the caller gives (a replay of a past run, from
// the REST API), outside trigger matching. The run id is claimed under the caller's request id, so
// a retried request starts one run.
import { NotFoundError, ValidationError } from "@stepline/internal/errors";
import type { StartRunRequest } from "@stepline/proto/stepline/runner/v1/runner_service";
import type { Redis } from "ioredis";
import type { ScheduleRuns } from "./consumer.js";
import type { Registry } from "./registry.js";
import { startRun } from "./runs.js";
import { isEnvironmentId } from "./validate.js";

const MAX_EVENTS = 1000;
const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

export class Replays {
  constructor(private readonly deps: { redis: Redis; registry: Registry; schedule: ScheduleRuns }) {}

  async start(req: StartRunRequest): Promise<{ runId: string }> {
    if (!isEnvironmentId(req.environmentId))
      throw new ValidationError("environment_id is missing or malformed");
    if (!REQUEST_ID.test(req.requestId))
      throw new ValidationError("request_id must be 1-64 of [A-Za-z0-9_-]");
    if (req.eventsJson.length === 0 || req.eventsJson.length > MAX_EVENTS) {
      throw new ValidationError(`a run needs 1 to ${MAX_EVENTS} events`);
    }
    req.eventsJson.forEach((json, i) => {
      let event: unknown;
      try {
        event = JSON.parse(json);
      } catch {
        throw new ValidationError(`events_json[${i}] is not JSON`);
      }
      if (typeof event !== "object" || event === null || Array.isArray(event)) {
        throw new ValidationError(`events_json[${i}] must be an event object`);
      }
    });
    // The cached registry (one GET while it is unchanged): a bulk replay makes many calls.
    const fns = (await this.deps.registry.loadMany([req.environmentId])).get(req.environmentId) ?? [];
    const fn = fns.find((f) => f.fn.id === req.functionId);
    if (!fn)
      throw new NotFoundError(`function ${req.functionId.slice(0, 200)} is not synced in this environment`);
    const runId = await startRun(this.deps, {
      fn,
      environmentId: req.environmentId,
      claimKey: `replay-${req.requestId}`,
      eventsJson: req.eventsJson,
      trigger: "replay",
    });
    return { runId };
  }
}
