// Validation of a SyncApp request (pure). Every error names the function and the field at fault
// ("function app-fn: triggers[0].event must ...") because the SDK relays the message to the person
// who synced the app. Valid input is normalised: canonical raw JSON and a version hash.

import { createHash } from "node:crypto";
import { parseDuration } from "@stepline/internal/duration";
import { ValidationError } from "@stepline/internal/errors";
import { isHttpUrl, isPrintable, isRetries, SYNC_RULES } from "@stepline/internal/sync-rules";
import { parseCron } from "./cron.js";
import { celSyntaxError } from "./expr.js";
import type { AppSync, CancelDef, FunctionDef, SyncInput, TriggerDef } from "./model.js";
import { validateFlow } from "./validate-flow.js";

/** Limits of one sync. Inngest allows 10 triggers per function; retries 0..20 like the SDK. */
export const LIMITS = {
  functions: 1_000,
  triggers: 10,
  retries: SYNC_RULES.maxRetries,
  idChars: SYNC_RULES.idChars,
  eventChars: 256,
  expressionChars: 4_096,
  rawJsonBytes: 256 * 1024,
  cancelOn: 10,
  /** The longest `timeouts` or `cancelOn` timeout: a year. */
  durationMs: 366 * 86_400_000,
} as const;

// Environment and account ids become Redis hash tags (`r:{<envId>}:...`): no braces, no spaces.
const TENANT_ID = /^[A-Za-z0-9._-]{1,128}$/;
// Function ids go into Redis keys with ':' as the separator, so ':' and braces are excluded.
const FUNCTION_ID = /^[^\s:{}\p{Cc}]+$/u;

/** Validates and normalises a SyncApp request; throws ValidationError naming the field at fault. */
export function validateSync(input: SyncInput): AppSync {
  if (!TENANT_ID.test(input.accountId)) fail("account_id must be 1-128 characters of [A-Za-z0-9._-]");
  if (!TENANT_ID.test(input.environmentId)) fail("environment_id must be 1-128 characters of [A-Za-z0-9._-]");
  if (!isAppId(input.appId)) fail(`app_id must be 1-${LIMITS.idChars} printable characters`);
  if (!isHttpUrl(input.url)) fail(`app ${input.appId}: url must be an absolute http(s) URL`);
  if (input.functions.length > LIMITS.functions) {
    fail(`app ${input.appId}: at most ${LIMITS.functions} functions per app`);
  }
  const seen = new Set<string>();
  const functions = input.functions.map((fn, i) => {
    const def = validateFunction(fn, i);
    if (seen.has(def.id)) fail(`function ${def.id}: id appears more than once in this sync`);
    seen.add(def.id);
    return def;
  });
  return {
    accountId: input.accountId,
    environmentId: input.environmentId,
    appId: input.appId,
    url: input.url,
    sdk: input.sdk.slice(0, 128),
    framework: input.framework.slice(0, 128),
    functions,
  };
}

/** True for an app id the registry accepts. */
export function isAppId(id: string): boolean {
  return id.length > 0 && id.length <= LIMITS.idChars && isPrintable(id);
}

/** True for an environment id the registry accepts (used by ListFunctions too). */
export function isEnvironmentId(id: string): boolean {
  return TENANT_ID.test(id);
}

function validateFunction(fn: SyncInput["functions"][number], index: number): FunctionDef {
  if (!fn.id) fail(`functions[${index}]: id must be non-empty`);
  const at = `function ${fn.id}`;
  if (fn.id.length > LIMITS.idChars || !FUNCTION_ID.test(fn.id)) {
    fail(`${at}: id must be 1-${LIMITS.idChars} characters without whitespace, ':', '{' or '}'`);
  }
  if (!fn.name || fn.name.length > LIMITS.idChars || !isPrintable(fn.name)) {
    fail(`${at}: name must be 1-${LIMITS.idChars} printable characters`);
  }
  if (!isHttpUrl(fn.url)) fail(`${at}: url must be an absolute http(s) URL (steps.step.runtime.url)`);
  // No trigger is valid: SDK v4 sends `triggers: []` for a function whose only trigger is
  // `invoke()` (it filters `inngest/function.invoked` out), and Inngest accepts such functions.
  if (fn.triggers.length > LIMITS.triggers) fail(`${at}: triggers may hold at most ${LIMITS.triggers}`);
  const triggers = fn.triggers.map((t, i) => validateTrigger(t, `${at}: triggers[${i}]`));
  if (!isRetries(fn.retries)) {
    fail(`${at}: retries must be an integer from 0 to ${LIMITS.retries}`);
  }
  const rawJson = canonicalRawJson(fn.rawJson, at);
  const config = JSON.parse(rawJson) as Record<string, unknown>;
  const cancel = validateCancel(config.cancel, at);
  const timeouts = validateTimeouts(config.timeouts, at);
  const flow = validateFlow(config, at);
  const body = {
    id: fn.id,
    name: fn.name,
    triggers,
    url: fn.url,
    retries: fn.retries,
    rawJson,
    cancel,
    ...timeouts,
    flow,
  };
  const version = createHash("sha256").update(JSON.stringify(body)).digest("hex").slice(0, 16);
  return { ...body, version };
}

function validateTrigger(t: { event: string; expression: string; cron: string }, at: string): TriggerDef {
  if (Boolean(t.event) === Boolean(t.cron)) fail(`${at} must set exactly one of event or cron`);
  if (t.cron) {
    if (t.expression) fail(`${at}.expression applies to event triggers only`);
    try {
      parseCron(t.cron);
    } catch (err) {
      fail(
        `${at}.cron ${JSON.stringify(t.cron)} is not a valid cron (like "0 5 * * *" or "TZ=Europe/Paris 0 5 * * *"): ${(err as Error).message}`,
      );
    }
    return { kind: "cron", cron: t.cron.trim() };
  }
  const event = t.event;
  if (event.length > LIMITS.eventChars || !isPrintable(event) || event.trim() !== event) {
    fail(`${at}.event must be 1-${LIMITS.eventChars} printable characters without surrounding spaces`);
  }
  if (event.includes("*") && !isWildcard(event)) {
    fail(`${at}.event may use '*' only as its whole last segment, after '/' or '.' (like "app/*")`);
  }
  if (t.expression.length > LIMITS.expressionChars) {
    fail(`${at}.expression must be at most ${LIMITS.expressionChars} characters`);
  }
  if (t.expression) {
    const syntax = celSyntaxError(t.expression);
    if (syntax !== null) fail(`${at}.expression is not valid CEL: ${syntax}`);
  }
  return { kind: "event", event, expression: t.expression };
}

/** The `cancel` list of a function config (the SDK's `cancelOn`, `match` already turned into `if`). */
function validateCancel(raw: unknown, at: string): CancelDef[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) fail(`${at}: cancel must be a list`);
  if (raw.length > LIMITS.cancelOn) fail(`${at}: cancel may hold at most ${LIMITS.cancelOn} entries`);
  return raw.map((c: unknown, i) => {
    const where = `${at}: cancel[${i}]`;
    if (typeof c !== "object" || c === null) fail(`${where} must be an object`);
    const { event, if: expr, timeout } = c as { event?: unknown; if?: unknown; timeout?: unknown };
    if (typeof event !== "string" || event.trim() === "" || event.length > LIMITS.eventChars) {
      fail(`${where}.event must be 1-${LIMITS.eventChars} characters`);
    }
    let expression = "";
    if (expr !== undefined && expr !== null && expr !== "") {
      if (typeof expr !== "string" || expr.length > LIMITS.expressionChars) {
        fail(`${where}.if must be a CEL expression of at most ${LIMITS.expressionChars} characters`);
      }
      const syntax = celSyntaxError(expr);
      if (syntax !== null) fail(`${where}.if is not valid CEL: ${syntax}`);
      expression = expr;
    }
    return { event, expression, timeoutMs: durationField(timeout, `${where}.timeout`) };
  });
}

/** `timeouts: {start?, finish?}` of a function config, in ms (0 = not set). */
function validateTimeouts(raw: unknown, at: string): { startTimeoutMs: number; finishTimeoutMs: number } {
  if (raw === undefined || raw === null) return { startTimeoutMs: 0, finishTimeoutMs: 0 };
  if (typeof raw !== "object" || Array.isArray(raw)) fail(`${at}: timeouts must be an object`);
  const { start, finish } = raw as { start?: unknown; finish?: unknown };
  return {
    startTimeoutMs: durationField(start, `${at}: timeouts.start`),
    finishTimeoutMs: durationField(finish, `${at}: timeouts.finish`),
  };
}

/** A duration field ("30s", "1h", or ms as a number); 0 when absent. */
function durationField(value: unknown, where: string): number {
  if (value === undefined || value === null || value === "") return 0;
  const ms = typeof value === "number" ? value : typeof value === "string" ? parseDuration(value) : null;
  if (ms === null || !Number.isFinite(ms) || ms <= 0) {
    fail(`${where} must be a duration like "30s", "10m" or "2h", got ${JSON.stringify(value)}`);
  }
  if (ms > LIMITS.durationMs) fail(`${where} must be at most a year`);
  return Math.ceil(ms);
}

/** `app/*`, `app/user.*`: one `*`, last, right after `/` or `.`, with a non-empty prefix before that. */
function isWildcard(event: string): boolean {
  const star = event.indexOf("*");
  if (star !== event.length - 1 || star < 2) return false;
  const sep = event[star - 1];
  return sep === "/" || sep === ".";
}

function canonicalRawJson(raw: string, at: string): string {
  if (raw === "") return "{}";
  if (Buffer.byteLength(raw) > LIMITS.rawJsonBytes) {
    fail(`${at}: config must be at most ${LIMITS.rawJsonBytes} bytes of JSON`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    fail(`${at}: config is not valid JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    fail(`${at}: config must be a JSON object`);
  }
  return canonicalJson(parsed);
}

/** JSON with object keys sorted at every level, so equal configs serialise to equal bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function fail(message: string): never {
  throw new ValidationError(message);
}
