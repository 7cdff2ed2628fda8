// Ids are ULIDs: sortable by creation time, so they double as dedupe keys and time hints.
import { decodeTime, encodeTime, monotonicFactory } from "ulid";

const next = monotonicFactory();

/** A new ULID (monotonic within this process). */
export function newId(): string {
  return next();
}

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** True when `s` is a well-formed ULID. */
export function isUlid(s: string): boolean {
  return ULID.test(s);
}

/** The time prefix (10 characters) of the ULIDs made at `ms`: every ULID made then or later sorts at or after it. */
export function ulidTimePrefix(ms: number): string {
  return encodeTime(Math.max(0, Math.min(Math.floor(ms), 2 ** 48 - 1)), 10);
}

/** The creation time (epoch ms) a ULID carries, or null for anything else. */
export function ulidTime(id: string): number | null {
  return isUlid(id) ? decodeTime(id) : null;
}
