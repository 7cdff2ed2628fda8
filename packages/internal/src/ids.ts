// Ids are ULIDs: sortable by creation time, so they double as dedupe keys and time hints.
import { monotonicFactory } from "ulid";

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
