// Admission of (event, function) pairs: each gets its run id, or is skipped because the function's
// `idempotency` key already started a run in the last 24 h or its `rateLimit` is full. One script
// call per environment (admit.lua) decides and stores the decision, so redeliveries and replicas
// agree; see the script for the rules.

import { readFileSync } from "node:fs";
import { newId } from "@stepline/internal/ids";
import { SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Redis, Result } from "ioredis";
import { evaluatedKeyHash, flowConfig, keyHash } from "./flow.js";
import { IDEMPOTENCY_TTL_S } from "./idempotency.js";
import { idemKey, placeholderKey, rateKey, userIdemKey, versionKey } from "./keys.js";
import type { FunctionDef } from "./model.js";

declare module "ioredis" {
  interface RedisCommander<Context> {
    runnerAdmit(numKeys: number, ...args: Array<string | number>): Result<string[], Context>;
  }
}

const ADMIT_LUA = readFileSync(new URL("../lua/admit.lua", import.meta.url), "utf8");

export interface AdmissionPair {
  environmentId: string;
  fn: FunctionDef;
  eventId: string;
  /** The event, parsed (keys are evaluated against it). */
  event: unknown;
}

export type Admission =
  | { kind: "run"; runId: string }
  | { kind: "skip"; reason: SkipReason; detail: string }
  /** Buffered before (a debounce or batch; the function's config changed since): nothing to do. */
  | { kind: "buffered" };

/** Decides pairs with admit.lua on one Redis client. */
export class Admitter {
  constructor(private readonly redis: Redis) {
    redis.defineCommand("runnerAdmit", { lua: ADMIT_LUA });
  }

  /**
   * Decides each pair, in order; one script call per environment, pipelined. `matchedAt` names
   * the registry version an environment's pairs were matched at, when it is to be checked: an
   * environment whose version moved since decides nothing and is listed in `stale`.
   */
  async admit(
    pairs: AdmissionPair[],
    matchedAt: (environmentId: string) => string | undefined = () => undefined,
  ): Promise<{ decisions: Admission[]; stale: Set<string> }> {
    const stale = new Set<string>();
    if (pairs.length === 0) return { decisions: [], stale };
    const byEnv = new Map<string, number[]>();
    pairs.forEach((p, i) => {
      const list = byEnv.get(p.environmentId);
      if (list) list.push(i);
      else byEnv.set(p.environmentId, [i]);
    });
    const pipeline = this.redis.pipeline();
    const order: Array<[string, number[]]> = [];
    for (const [env, indexes] of byEnv) {
      const keys: string[] = [versionKey(env)];
      const args: Array<string | number> = [IDEMPOTENCY_TTL_S, matchedAt(env) ?? ""];
      for (const i of indexes) {
        const p = pairs[i] as AdmissionPair;
        const flow = flowConfig(p.fn);
        // A key that does not evaluate opts the event out of idempotency (it never collides).
        const idem = flow.idempotency ? evaluatedKeyHash(flow.idempotency, p.event) : null;
        const rate = flow.rateLimit;
        keys.push(
          idemKey(env, p.fn.id, p.eventId),
          idem ? userIdemKey(env, p.fn.id, idem) : placeholderKey(env),
          rate ? rateKey(env, p.fn.id, rate.key ? keyHash(rate.key, p.event) : "") : placeholderKey(env),
        );
        args.push(newId(), p.eventId, idem ? 1 : 0, rate?.limit ?? 0, rate?.periodMs ?? 0);
      }
      pipeline.runnerAdmit(keys.length, ...keys, ...args);
      order.push([env, indexes]);
    }
    const results = (await pipeline.exec()) ?? [];
    // A stale environment's pairs are left undecided: the caller matches them again.
    const out = new Array<Admission>(pairs.length);
    order.forEach(([env, indexes], call) => {
      const [err, value] = results[call] ?? [new Error("missing pipeline reply"), null];
      if (err) throw err;
      const decisions = value as string[];
      if (decisions.length === 1 && decisions[0] === "stale") {
        stale.add(env);
        return;
      }
      indexes.forEach((i, j) => {
        out[i] = decode(decisions[j] ?? "");
      });
    });
    return { decisions: out, stale };
  }
}

function decode(decision: string): Admission {
  if (decision.startsWith("debounce:") || decision.startsWith("batch:")) return { kind: "buffered" };
  if (!decision.startsWith("skip:")) return { kind: "run", runId: decision };
  const [, reason, a = "", b = ""] = decision.split(":");
  if (reason === "idempotent") {
    return {
      kind: "skip",
      reason: SkipReason.SKIP_REASON_IDEMPOTENT,
      detail: `run ${a} has the same idempotency key`,
    };
  }
  return {
    kind: "skip",
    reason: SkipReason.SKIP_REASON_RATE_LIMITED,
    detail: `rate limit of ${a} runs per ${Number(b) / 1000}s reached`,
  };
}
