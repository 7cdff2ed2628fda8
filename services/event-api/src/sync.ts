// Validation of the SDK's POST /fn/register body and its translation to RunnerService.SyncApp.
// Pure. Errors name the function and the field (`function <id>: <field> ...`): the SDK relays
// the message to whoever sent the PUT that triggered the sync.
import { ValidationError } from "@stepline/internal/errors";
import { isHttpUrl, isPrintable, isRetries, SYNC_RULES } from "@stepline/internal/sync-rules";
import type {
  FunctionConfig,
  SyncAppRequest,
  Trigger,
} from "@stepline/proto/stepline/runner/v1/runner_service";
import type { EnvRef } from "./tenancy.js";

const MAX_ID_LENGTH = SYNC_RULES.idChars;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function nonEmptyString(v: unknown): v is string {
  return typeof v === "string" && v.trim() !== "";
}

/** Checks a register body and builds the SyncApp request for the tenant `ref`. */
export function translateRegister(body: unknown, ref: EnvRef): SyncAppRequest {
  if (!isObj(body)) throw new ValidationError("the body must be a JSON object");
  if (!isHttpUrl(body.url)) throw new ValidationError("url must be an absolute http(s) URL of the app");
  if (!nonEmptyString(body.appName)) throw new ValidationError("appName is required (a non-empty string)");
  if (body.appName.length > MAX_ID_LENGTH || !isPrintable(body.appName)) {
    throw new ValidationError(`appName must be at most ${MAX_ID_LENGTH} printable characters`);
  }
  if (!Array.isArray(body.functions)) throw new ValidationError("functions must be an array");
  const seen = new Set<string>();
  const functions = body.functions.map((fn, i) => {
    const config = translateFunction(fn, i);
    if (seen.has(config.id)) throw new ValidationError(`function ${config.id}: id appears more than once`);
    seen.add(config.id);
    return config;
  });
  return {
    accountId: ref.accountId,
    environmentId: ref.environmentId,
    appId: body.appName,
    url: body.url,
    sdk: typeof body.sdk === "string" ? body.sdk : "",
    framework: typeof body.framework === "string" ? body.framework : "",
    functions,
  };
}

function translateFunction(fn: unknown, index: number): FunctionConfig {
  if (!isObj(fn)) throw new ValidationError(`functions[${index}] must be a JSON object`);
  if (!nonEmptyString(fn.id))
    throw new ValidationError(`functions[${index}]: id is required (a non-empty string)`);
  const id = fn.id;
  const fail = (msg: string) => new ValidationError(`function ${id}: ${msg}`);
  if (id.length > MAX_ID_LENGTH || !isPrintable(id)) {
    throw fail(`id must be at most ${MAX_ID_LENGTH} printable characters`);
  }
  if (fn.name !== undefined && typeof fn.name !== "string") throw fail("name must be a string");
  if (!Array.isArray(fn.triggers)) throw fail("triggers must be an array");
  const triggers = fn.triggers.map((t, i) => translateTrigger(t, `triggers[${i}]`, fail));
  const { url, retries } = translateSteps(fn.steps, fail);
  return {
    id,
    name: nonEmptyString(fn.name) ? fn.name : id,
    triggers,
    url,
    retries,
    rawJson: JSON.stringify(fn),
  };
}

function translateTrigger(t: unknown, at: string, fail: (m: string) => Error): Trigger {
  if (!isObj(t)) throw fail(`${at} must be an object with "event" or "cron"`);
  const hasEvent = t.event !== undefined;
  const hasCron = t.cron !== undefined;
  if (hasEvent === hasCron) throw fail(`${at} must have exactly one of "event" and "cron"`);
  if (hasEvent) {
    if (!nonEmptyString(t.event)) throw fail(`${at}.event must be a non-empty string`);
    if (t.expression !== undefined && typeof t.expression !== "string") {
      throw fail(`${at}.expression must be a string (a CEL expression)`);
    }
    return { event: t.event, expression: t.expression ?? "", cron: "" };
  }
  if (!nonEmptyString(t.cron)) throw fail(`${at}.cron must be a non-empty string (a cron schedule)`);
  if (t.jitter !== undefined && typeof t.jitter !== "string")
    throw fail(`${at}.jitter must be a duration string`);
  return { event: "", expression: "", cron: t.cron };
}

// The SDK sends one step entry, `step`, whose runtime URL is what the executor calls.
function translateSteps(steps: unknown, fail: (m: string) => Error): { url: string; retries: number } {
  if (!isObj(steps)) throw fail('steps must be an object with a "step" entry');
  const entries = Object.keys(steps);
  const name = "step" in steps ? "step" : entries.length === 1 ? (entries[0] as string) : null;
  if (name === null) throw fail('steps must have a "step" entry');
  const step = steps[name];
  const at = `steps.${name}`;
  if (!isObj(step)) throw fail(`${at} must be an object`);
  if (!isObj(step.runtime)) throw fail(`${at}.runtime is required`);
  if (step.runtime.type !== undefined && step.runtime.type !== "http") {
    throw fail(`${at}.runtime.type ${JSON.stringify(step.runtime.type)} is not supported (only "http")`);
  }
  if (!isHttpUrl(step.runtime.url)) throw fail(`${at}.runtime.url must be an absolute http(s) URL`);
  let retries: number = SYNC_RULES.defaultRetries;
  if (step.retries !== undefined && step.retries !== null) {
    if (!isObj(step.retries)) throw fail(`${at}.retries must be an object {attempts}`);
    const attempts = step.retries.attempts;
    if (attempts !== undefined && attempts !== null) {
      if (!isRetries(attempts)) {
        throw fail(`${at}.retries.attempts must be an integer from 0 to ${SYNC_RULES.maxRetries}`);
      }
      retries = attempts;
    }
  }
  return { url: step.runtime.url, retries };
}
