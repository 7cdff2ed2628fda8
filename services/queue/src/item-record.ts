// The item record the queue scripts keep (common.lua): a small header the scripts update, then
// the producer's fields as JSON, which the hot path never parses.
import { ScriptReplyError } from "./scripts.js";

/** The producer's fields of an item, stored as JSON after the record's header (common.lua). */
export interface ItemBody {
  run: string;
  acct: string;
  env: string;
  fn: string;
  pid: string;
  kind: number;
  pl: string;
  /** The run's traceparent, only when it is traced. */
  tp?: string;
}

/**
 * An item record as the scripts keep it: `<st>:<gen>:<del>:<exp>:<att>:<due>:<sc>:<rel>|<body JSON>`
 * (a record from before `rel` existed has 7 header fields and reads as 0 releases).
 */
export interface ItemRecord {
  state: "r" | "l" | "d";
  generation: number;
  /** Deliveries that counted toward dead-lettering (claims not answered by a release). */
  deliveries: number;
  leaseExpiresAtMs: number;
  attempt: number;
  dueMs: number;
  /** Releases (Retry with the attempt unchanged) since the current attempt began. */
  releases: number;
  body: ItemBody;
}

const RECORD = /^([rld]):(\d+):(\d+):(\d+):(\d+):(\d+):(\d+)(?::(\d+))?\|/;

/** Parses an item record (throws on a malformed one: the scripts never write such). */
export function parseRecord(raw: string): ItemRecord {
  const m = RECORD.exec(raw);
  if (!m) throw new ScriptReplyError(`malformed item record: ${raw.slice(0, 80)}`);
  return {
    state: m[1] as ItemRecord["state"],
    generation: Number(m[2]),
    deliveries: Number(m[3]),
    leaseExpiresAtMs: Number(m[4]),
    attempt: Number(m[5]),
    dueMs: Number(m[6]),
    releases: Number(m[8] ?? 0),
    body: JSON.parse(raw.slice(m[0].length)) as ItemBody,
  };
}
