// Validation of POST /e bodies and building of the Kafka records. Pure: no I/O, so every rule
// is tested directly. Every error message names the event (its index) and the field at fault.
import { TooLargeError, ValidationError } from "@stepline/internal/errors";
import { EVENT_MAX_BYTES } from "@stepline/internal/event-limits";
import { isPrintable } from "@stepline/internal/sync-rules";
import type { TraceParent } from "@stepline/internal/telemetry";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { EnvRef } from "./tenancy.js";

/** The largest event, serialized as stored (after id and ts are filled in). */
export const MAX_EVENT_BYTES = EVENT_MAX_BYTES;
/** The largest request body. */
export const MAX_REQUEST_BYTES = 3 * 1024 * 1024;
const MAX_NAME_LENGTH = 256;
const MAX_ID_LENGTH = 256;
/** Names under this prefix are Stepline's own (function finished/failed, cron, invoke). */
export const RESERVED_PREFIX = "inngest/";

/** One validated event, ready to produce. */
export interface PreparedEvent {
  id: string;
  name: string;
  /** `{name, data, id, ts, v?, user?}` as JSON. */
  json: string;
}

/**
 * Why `id` is not a usable event id (null when it is): 1 to 256 characters, no control characters.
 * The REST API applies the same rule, so every accepted id can be looked up.
 */
export function eventIdProblem(id: string): string | null {
  if (id.length === 0) return "must not be empty";
  if (id.length > MAX_ID_LENGTH) return `is too long (${id.length} characters; at most ${MAX_ID_LENGTH})`;
  if (!isPrintable(id)) return "must not contain control characters";
  return null;
}

/** Parses a request body as JSON; a syntax error becomes a ValidationError saying so. */
export function parseJsonBody(raw: Buffer | string | undefined): unknown {
  const text = typeof raw === "string" ? raw : (raw?.toString("utf8") ?? "");
  if (text.trim() === "") throw new ValidationError("invalid JSON: the request body is empty");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`invalid JSON: ${(err as Error).message}`);
  }
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Validates a parsed body (one event or an array of them) and returns the events with ids and
 * timestamps filled in. `newId` makes an id for events that bring none.
 */
export function prepareEvents(
  body: unknown,
  nowMs: number,
  newId: () => string,
  /** Stepline's own senders may use `inngest/` names; users may not. */
  allowReserved = false,
): PreparedEvent[] {
  const list = Array.isArray(body) ? body : [body];
  if (!Array.isArray(body) && !isPlainObject(body)) {
    throw new ValidationError(`the body must be an event object or an array of events, got ${kindOf(body)}`);
  }
  if (list.length === 0) throw new ValidationError("the body is an empty array: send at least one event");
  return list.map((ev, i) =>
    prepareOne(ev, Array.isArray(body) ? `events[${i}]` : "event", nowMs, newId, allowReserved),
  );
}

function prepareOne(
  ev: unknown,
  at: string,
  nowMs: number,
  newId: () => string,
  allowReserved: boolean,
): PreparedEvent {
  if (!isPlainObject(ev)) throw new ValidationError(`${at} must be a JSON object, got ${kindOf(ev)}`);
  const name = checkName(ev.name, at, allowReserved);
  const data = ev.data ?? {};
  if (!isPlainObject(data))
    throw new ValidationError(`${at}.data must be a JSON object, got ${kindOf(data)}`);
  let id: string;
  if (ev.id === undefined || ev.id === null) {
    id = newId();
  } else if (typeof ev.id !== "string") {
    throw new ValidationError(`${at}.id must be a string, got ${kindOf(ev.id)}`);
  } else {
    const problem = eventIdProblem(ev.id);
    if (problem) throw new ValidationError(`${at}.id ${problem}`);
    id = ev.id;
  }
  let ts = nowMs;
  if (ev.ts !== undefined && ev.ts !== null) {
    if (typeof ev.ts !== "number" || !Number.isFinite(ev.ts) || ev.ts < 0) {
      throw new ValidationError(`${at}.ts must be a non-negative number of milliseconds since the epoch`);
    }
    ts = Math.trunc(ev.ts);
  }
  const out: Record<string, unknown> = { name, data, id, ts };
  if (ev.v !== undefined && ev.v !== null) {
    if (typeof ev.v !== "string") throw new ValidationError(`${at}.v must be a string, got ${kindOf(ev.v)}`);
    out.v = ev.v;
  }
  if (ev.user !== undefined && ev.user !== null) {
    if (!isPlainObject(ev.user)) {
      throw new ValidationError(`${at}.user must be a JSON object, got ${kindOf(ev.user)}`);
    }
    out.user = ev.user;
  }
  const json = JSON.stringify(out);
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > MAX_EVENT_BYTES) {
    throw new TooLargeError(
      `${at} is ${bytes} bytes; the limit is 512 KiB (${MAX_EVENT_BYTES} bytes) per event`,
    );
  }
  return { id, name, json };
}

function checkName(name: unknown, at: string, allowReserved: boolean): string {
  if (name === undefined || name === null) throw new ValidationError(`${at}.name is required`);
  if (typeof name !== "string") throw new ValidationError(`${at}.name must be a string, got ${kindOf(name)}`);
  if (name.trim() === "") throw new ValidationError(`${at}.name must not be empty`);
  if (name.length > MAX_NAME_LENGTH) {
    throw new ValidationError(
      `${at}.name is too long (${name.length} characters; at most ${MAX_NAME_LENGTH})`,
    );
  }
  if (!allowReserved && name.toLowerCase().startsWith(RESERVED_PREFIX)) {
    throw new ValidationError(
      `${at}.name "${name}" is reserved: names starting with "${RESERVED_PREFIX}" are sent by Stepline itself`,
    );
  }
  return name;
}

/** The Kafka records of a request's events, in order; `traceParent` is the receiving span's. */
export function buildRecords(
  ref: EnvRef,
  events: PreparedEvent[],
  receivedAtMs: number,
  traceParent: TraceParent,
): EventRecord[] {
  return events.map((e) => ({
    accountId: ref.accountId,
    environmentId: ref.environmentId,
    eventId: e.id,
    receivedAtMs,
    eventJson: e.json,
    name: e.name,
    traceParent,
  }));
}

/** Encodes a record for the `events` topic. */
export function encodeRecord(r: EventRecord): Buffer {
  return Buffer.from(EventRecord.encode(r).finish());
}
