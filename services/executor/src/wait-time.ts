// When a sleep, a wait's timeout or an invoke's timeout ends, from what the SDK wrote.
import { parseDuration } from "@stepline/internal/duration";

/** The longest sleep, wait or invoke timeout accepted (a year, leap years included). */
export const MAX_WAIT_MS = 366 * 24 * 3600 * 1000;

/**
 * When a sleep or a wait's timeout ends: `value` is a duration as the SDK writes it ("1h30m",
 * "2d", "" for none) or an ISO date (sleepUntil). Returns the epoch ms, never before `nowMs`, or
 * what is wrong with it (phrased to follow "sleep " or "timeout ").
 */
export function timeFrom(value: unknown, nowMs: number): number | string {
  if (typeof value !== "string") return "has no duration";
  const text = value.trim();
  let until: number;
  if (text === "") {
    until = nowMs;
  } else if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    until = Date.parse(text);
    if (Number.isNaN(until)) return `until ${JSON.stringify(value)}: not a valid date`;
  } else {
    const ms = parseDuration(text);
    if (ms === null) {
      return `of ${JSON.stringify(value)}: not a duration (like "30s", "1h30m", "2d") or an ISO date`;
    }
    until = nowMs + ms;
  }
  if (until - nowMs > MAX_WAIT_MS) return `of ${JSON.stringify(value)} is longer than the maximum of a year`;
  return Math.max(until, nowMs);
}
