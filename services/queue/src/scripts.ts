// Loads the Lua scripts of `lua/` into an ioredis client (defineCommand: EVALSHA with an EVAL
// fallback on NOSCRIPT) and calls them through one typed wrapper each, which maps the scripts'
// negative codes to errors. `-- @include "x"` lines are replaced by `lua/includes/x.lua`.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConflictError } from "@stepline/internal/errors";
import { scriptErrorOf } from "@stepline/internal/script-errors";
import type { ClientContext, Redis, Result } from "ioredis";
import { assertOneSlot } from "./keys.js";

const LUA_DIR = fileURLToPath(new URL("../lua/", import.meta.url));

type ScriptArg = string | number;
type ScriptFn = (numKeys: number, ...args: ScriptArg[]) => Promise<unknown>;

const SCRIPTS = {
  enqueue: "stepqEnqueue",
  claim: "stepqClaim",
  extend: "stepqExtend",
  complete: "stepqComplete",
  retry: "stepqRetry",
  remove: "stepqRemove",
  reclaim: "stepqReclaim",
  expired: "stepqExpired",
  "owner-acquire": "stepqOwnerAcquire",
  "owner-release": "stepqOwnerRelease",
  pause: "stepqPause",
  resume: "stepqResume",
  redrive: "stepqRedrive",
} as const;

export type ScriptName = keyof typeof SCRIPTS;

declare module "ioredis" {
  interface RedisCommander<Context extends ClientContext = { type: "default" }> {
    stepqEnqueue(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqClaim(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqExtend(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqComplete(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqRetry(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqRemove(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqReclaim(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqExpired(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqOwnerAcquire(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqOwnerRelease(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqPause(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqResume(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
    stepqRedrive(numKeys: number, ...args: ScriptArg[]): Result<unknown, Context>;
  }
}

/** Thrown when a claim or reclaim carries a token that no longer owns the shard. */
export class NotOwnerError extends ConflictError {
  override name = "NotOwnerError";
}

/** A script answered something its header does not allow: a bug, never a user error. */
export class ScriptReplyError extends Error {
  override name = "ScriptReplyError";
}

export interface ScriptOptions {
  /** Check that every call's keys share one cluster slot (tests; cheap enough for dev). */
  assertSlots?: boolean;
  /** Observes each call (tests). */
  onCall?: (name: ScriptName, keys: readonly string[]) => void;
  /** Test-only clock: passed to the scripts instead of letting them read Redis TIME. */
  nowMs?: () => number;
}

/** The source of `lua/<name>.lua` with its includes resolved. */
export function scriptSource(name: string): string {
  const text = readFileSync(`${LUA_DIR}${name}.lua`, "utf8");
  return text.replace(/^-- @include "([a-z-]+)"$/gm, (_, inc: string) =>
    readFileSync(`${LUA_DIR}includes/${inc}.lua`, "utf8"),
  );
}

/** The queue's scripts bound to one client. */
export class Scripts {
  constructor(
    readonly redis: Redis,
    private readonly options: ScriptOptions = {},
  ) {
    for (const [file, command] of Object.entries(SCRIPTS)) {
      if (command in redis) continue;
      redis.defineCommand(command, { lua: scriptSource(file), readOnly: file === "expired" });
    }
  }

  /** The `now` override argument: 0 (Redis TIME) unless a test clock is set. */
  now(): number {
    return this.options.nowMs?.() ?? 0;
  }

  /**
   * Runs script `name` with `keys` and `args`; the reply is the script's raw answer. A refusal of
   * the whole call (@stepline/internal/script-errors) becomes its typed error here, once.
   */
  async run(name: ScriptName, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    if (this.options.assertSlots) assertOneSlot(keys);
    this.options.onCall?.(name, keys);
    const fn = (this.redis as unknown as Record<string, ScriptFn>)[SCRIPTS[name]];
    if (!fn) throw new ScriptReplyError(`script ${name} is not loaded`);
    try {
      return await fn.call(this.redis, keys.length, ...keys, ...args);
    } catch (err) {
      if (scriptErrorOf(err)?.code === "NOT_OWNER")
        throw new NotOwnerError(`${name}: not the owner of the shard`);
      throw err;
    }
  }
}

/** Reads a script reply as a list, or throws. */
export function asList(reply: unknown, what: string): unknown[] {
  if (!Array.isArray(reply)) throw new ScriptReplyError(`${what}: unexpected reply ${String(reply)}`);
  return reply;
}

/** Reads a script reply element as an integer, or throws. */
export function asInt(value: unknown, what: string): number {
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new ScriptReplyError(`${what}: not an integer: ${String(value)}`);
  return n;
}

/** Reads a list of integers. */
export function asInts(value: unknown, what: string): number[] {
  return asList(value, what).map((v) => asInt(v, what));
}

/** Reads a list of strings. */
export function asStrings(value: unknown, what: string): string[] {
  return asList(value, what).map((v) => {
    if (typeof v !== "string") throw new ScriptReplyError(`${what}: not a string`);
    return v;
  });
}
