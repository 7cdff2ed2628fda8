// Short human summaries of a function's triggers and flow-control settings. The values are "as the
// SDK sent them", so every reader here is defensive about shapes (number, object or array).
import type { Flow, Json, Trigger } from "./api";

type Obj = { [key: string]: Json };

function isObj(v: Json | undefined): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function field(v: Json | undefined, key: string): Json | undefined {
  return isObj(v) ? v[key] : undefined;
}

/** "1m", "30s", 60000 (ms) or 60 → a compact period label. */
function period(v: Json | undefined): string {
  if (typeof v === "string") return v;
  if (typeof v === "number") return v >= 1000 ? `${v / 1000}s` : `${v}ms`;
  return "?";
}

function withKey(text: string, v: Json | undefined): string {
  const key = field(v, "key");
  return typeof key === "string" && key ? `${text} by ${key}` : text;
}

function concurrency(v: Json | undefined): string[] {
  if (v === undefined || v === null) return [];
  const items = Array.isArray(v) ? v : [v];
  return items.map((item) => {
    if (typeof item === "number") return `concurrency ${item}`;
    const limit = field(item, "limit");
    return withKey(`concurrency ${typeof limit === "number" ? limit : "?"}`, item);
  });
}

function limitPer(label: string, v: Json | undefined): string[] {
  if (!isObj(v)) return [];
  const limit = field(v, "limit");
  const burst = field(v, "burst");
  const text = `${label} ${typeof limit === "number" ? limit : "?"}/${period(field(v, "period"))}`;
  return [withKey(typeof burst === "number" && burst > 0 ? `${text} (burst ${burst})` : text, v)];
}

export function summarizeFlow(given: Flow | null | undefined, retries?: number): string[] {
  const out: string[] = [];
  const flow = given ?? {};
  out.push(...concurrency(flow.concurrency));
  out.push(...limitPer("throttle", flow.throttle));
  out.push(...limitPer("rate limit", flow.rate_limit));
  if (isObj(flow.debounce)) {
    const timeout = field(flow.debounce, "timeout");
    const text = `debounce ${period(field(flow.debounce, "period"))}`;
    out.push(withKey(timeout === undefined ? text : `${text} (max ${period(timeout)})`, flow.debounce));
  }
  if (isObj(flow.batch_events)) {
    const size = field(flow.batch_events, "maxSize");
    out.push(
      `batch ${typeof size === "number" ? size : "?"} / ${period(field(flow.batch_events, "timeout"))}`,
    );
  }
  if (flow.priority) out.push("priority");
  if (flow.idempotency) out.push(`idempotency ${flow.idempotency}`);
  if (isObj(flow.singleton)) {
    const mode = field(flow.singleton, "mode");
    out.push(withKey(`singleton${typeof mode === "string" ? ` (${mode})` : ""}`, flow.singleton));
  }
  for (const c of flow.cancel_on ?? []) {
    const event = field(c, "event");
    out.push(`cancel on ${typeof event === "string" ? event : "event"}`);
  }
  if (typeof retries === "number") out.push(`retries ${retries}`);
  return out;
}

export function triggerLabel(t: Trigger): { kind: "event" | "cron"; text: string; title?: string } {
  if ("cron" in t) return { kind: "cron", text: t.cron };
  return { kind: "event", text: t.event, title: t.expression ? `if ${t.expression}` : undefined };
}
