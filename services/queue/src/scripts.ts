// Loads the Lua scripts of `lua/` into an ioredis client (defineCommand: EVALSHA with an EVAL
// fallback on NOSCRIPT) and calls them through one typed wrapper each, which maps the scripts'
// negative codes to errors. `-- @include "x"` lines are replaced by `lua/includes/x.lua`.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConflictError } from "@stepline/internal/errors";
import { scriptErrorOf } from "@stepline/internal/script-errors";
import type { ClientContext, Redis, Result } from "ioredis";
import { assertOneSlot } from "./keys.js";
import { inOneTrip } from "./one-trip.js";

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
    const fn = this.prepare({ name, keys, args }, this.redis);
    try {
      return await fn();
    } catch (err) {
      throw typedRefusal(name, err);
    }
  }

  /**
   * Runs every call in one trip to Redis (one-trip.ts: a round of owner renewals over every shard
   * is one socket write) and returns their replies in order; rejects with the first refusal, typed.
   */
  async runMany(calls: readonly ScriptCall[]): Promise<unknown[]> {
    return inOneTrip(
      this.redis,
      calls.map((c) => (target) => this.prepare(c, target)()),
      (i, err) => typedRefusal(calls[i]?.name ?? "unknown", err),
    );
  }

  /**
   * Checks a call (slots, observer) and binds it to `target`: on the client, calling it sends the
   * call and gives the reply's promise; on a pipeline, it queues the call there.
   */
  private prepare(c: ScriptCall, target: object): () => unknown {
    if (this.options.assertSlots) assertOneSlot(c.keys);
    this.options.onCall?.(c.name, c.keys);
    const fn = (target as Record<string, ScriptFn>)[SCRIPTS[c.name]];
    if (!fn) throw new ScriptReplyError(`script ${c.name} is not loaded`);
    return () => fn.call(target, c.keys.length, ...c.keys, ...c.args);
  }
}

/** One script call of `Scripts.runMany`. */
export interface ScriptCall {
  name: ScriptName;
  keys: readonly string[];
  args: readonly ScriptArg[];
}

function typedRefusal(name: string, err: unknown): unknown {
  if (scriptErrorOf(err)?.code === "NOT_OWNER")
    return new NotOwnerError(`${name}: not the owner of the shard`);
  return err;
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
