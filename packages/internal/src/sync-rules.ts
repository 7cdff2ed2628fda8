// The rules of an app sync that both ends check: event-api when it reads the SDK's register body
// (so the SDK gets its answer before anything is sent on) and the runner when it stores the sync
// (whoever calls RunnerService.SyncApp). One copy, so the two can never disagree.

/** Limits every sync keeps. */
export const SYNC_RULES = {
  /** Retries after the first attempt when a function sets none (the SDK's and Inngest's default). */
  defaultRetries: 4,
  /** Inngest's ceiling on retries. */
  maxRetries: 20,
  /** Longest app id, function id and name, in characters. */
  idChars: 256,
} as const;

const CONTROL = /\p{Cc}/u;

/** True for text without control characters (names end up in tables, logs and keys). */
export function isPrintable(s: string): boolean {
  return !CONTROL.test(s);
}

/** True for an absolute http(s) URL with a host (what an app is served at). */
export function isHttpUrl(v: unknown): v is string {
  if (typeof v !== "string" || !URL.canParse(v)) return false;
  const u = new URL(v);
  return (u.protocol === "http:" || u.protocol === "https:") && u.host !== "";
}

/** True for a retries count a function may set: an integer from 0 to SYNC_RULES.maxRetries. */
export function isRetries(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= SYNC_RULES.maxRetries;
}
