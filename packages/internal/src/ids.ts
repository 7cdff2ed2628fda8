// Ids are ULIDs: sortable by creation time, so they double as dedupe keys and time hints.
import { randomFillSync } from "node:crypto";
import { decodeTime, encodeTime, monotonicFactory } from "ulid";

// ulid's own generator asks the OS for one byte per character (16 calls per id); a pool refilled
// 4 KiB at a time gives the same uniform bytes for a fraction of the cost.
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

/** A uniform number in [0, 1) with 8 bits of entropy: ulid maps it to one of 32 characters. */
function pooledRandom(): number {
  if (poolAt === pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  return (pool[poolAt++] as number) / 256;
}

const next = monotonicFactory(pooledRandom);

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
