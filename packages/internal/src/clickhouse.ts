// ClickHouse client setup and the one tested helper that puts values into SQL text. Server-side
// query parameters are not available on ClickHouse 18.16, so every value goes through `sqlString`
// or `sqlInt`, and identifiers through `sqlIdent`.

import type { ClickHouseClient } from "@clickhouse/client";
import { ClickHouseLogLevel, createClient } from "@clickhouse/client";
import { ValidationError } from "./errors.js";

/** Creates a client for `url`; `database` is used by queries that name no database. */
export function createClickHouse(url: string, database?: string): ClickHouseClient {
  return createClient({
    url,
    database,
    request_timeout: 30_000,
    clickhouse_settings: { input_format_skip_unknown_fields: 1 },
    // Failures reach callers as errors, which they log through pino; the client's own
    // console logger would print them a second time, outside the structured log.
    log: { level: ClickHouseLogLevel.OFF },
  });
}

/** A single-quoted SQL string literal, with backslashes and quotes escaped. */
export function sqlString(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\0/g, "\\0")}'`;
}

/** A safe integer literal (throws on anything else). */
export function sqlInt(value: number): string {
  if (!Number.isSafeInteger(value)) throw new ValidationError(`not an integer: ${value}`);
  return String(value);
}

/** An identifier (database or table name): letters, digits, underscores only. */
export function sqlIdent(value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) throw new ValidationError(`bad identifier: ${value}`);
  return value;
}

/**
 * ClickHouse error codes that say the server refused the data itself (it cannot parse or hold a
 * value): sending the same rows again can never succeed. Anything else (the network, a timeout,
 * too many parts, memory) may pass on a later try.
 */
const REJECTION_CODES = new Set([6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 131, 349]);

/**
 * True when `err` is ClickHouse refusing the inserted data (see REJECTION_CODES; also "too many
 * partitions for single INSERT block", which only a smaller insert avoids). The code is read from
 * the message too: ClickHouse 18.16's format ("Code: 131, e.displayText() = ...") is not one the
 * client parses into a ClickHouseError.
 */
export function isDataRejection(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = typeof e?.message === "string" ? e.message : "";
  const code = Number(typeof e?.code === "string" ? e.code : /Code: (\d+)/.exec(message)?.[1]);
  if (code === 252) return /partitions for single INSERT block/i.test(message);
  return REJECTION_CODES.has(code);
}
