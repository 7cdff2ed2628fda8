// The one error convention of Stepline's Lua scripts (queue, executor, runner). A script that
// refuses a whole call answers `redis.error_reply("<CODE> <detail>")` with CODE from the closed
// set below; outcomes per item (a stale lease, an existing id) are results, never errors. Each
// service maps the codes to its typed errors in one place (its script wrapper), through
// `scriptErrorOf`.

/** The codes a script may refuse a whole call with. */
export const SCRIPT_ERROR_CODES = [
  /** The run, item or record the call is about does not exist. */
  "NORUN",
  /** The run has ended: nothing is written. */
  "ENDED",
  /** The call would take a run past a limit; detail: "<limit> <value>". */
  "LIMIT",
  /** The caller's token does not own the shard any more. */
  "NOT_OWNER",
  /** The call conflicts with what is stored; detail says what. */
  "CONFLICT",
] as const;

export type ScriptErrorCode = (typeof SCRIPT_ERROR_CODES)[number];

const CODES = new Set<string>(SCRIPT_ERROR_CODES);

/**
 * The code and detail of a script's refusal (Redis prefixes "ERR " on some versions), or null for
 * any other error (Redis unreachable, a script bug), which callers treat as unavailable.
 */
export function scriptErrorOf(err: unknown): { code: ScriptErrorCode; detail: string } | null {
  const message = err instanceof Error ? err.message : String(err);
  const m = /^(?:ERR )?([A-Z_]+)(?: (.*))?$/s.exec(message);
  if (!m || !CODES.has(m[1] as string)) return null;
  return { code: m[1] as ScriptErrorCode, detail: (m[2] ?? "").trim() };
}
