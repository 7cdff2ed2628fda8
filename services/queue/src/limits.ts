// The concurrency and throttle limits of functions, as synced now. The runner owns the registry;
// the queue asks it (RunnerService.GetFlowLimits) and keeps each answer for a short while, so a
// re-sync that changes a limit applies to queued work within that time and Redis never holds a
// limit as the truth. Partitions without flow control never need an answer.
import type { Clock } from "@stepline/internal/clock";
import { systemClock } from "@stepline/internal/clock";
import { callUnary } from "@stepline/internal/grpc";
import { ConcurrencyScope } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import type { PartitionSpec, Scope } from "./partitions.js";

export interface ConcurrencyLimitDef {
  scope: Scope;
  /** True when the limit has a key: each key value has `limit` slots of its own. */
  keyed: boolean;
  /** Steps in progress at once; 0 = no limit. */
  limit: number;
}

export interface FunctionLimits {
  concurrency: ConcurrencyLimitDef[];
  throttle: { limit: number; periodMs: number; burst: number } | null;
}

export interface FunctionKey {
  accountId: string;
  environmentId: string;
  functionId: string;
}

/** Where limits come from; null for a function that is not synced. */
export interface FlowLimitsSource {
  fetch(functions: FunctionKey[]): Promise<Array<FunctionLimits | null>>;
}

/** The limits claim.lua gets for a partition: one per concurrency set, and the throttle's. */
export function claimLimits(
  spec: PartitionSpec,
  limits: FunctionLimits | null,
): { concurrency: number[]; throttle: FunctionLimits["throttle"] } {
  // A group takes the first limit of the config with its scope and keyedness: the config may
  // have been reordered or changed since the run's items were made.
  const unused = [...(limits?.concurrency ?? [])];
  const concurrency = spec.groups.map((g) => {
    const i = unused.findIndex((c) => c.scope === g.scope && c.keyed === (g.keyHash !== ""));
    if (i < 0) return 0;
    const [c] = unused.splice(i, 1);
    return c?.limit ?? 0;
  });
  const t = limits?.throttle;
  return { concurrency, throttle: spec.throttle && t && t.limit > 0 ? t : null };
}

/** True when items of the partition are subject to limits (so claim needs the function's). */
export function needsLimits(spec: PartitionSpec | null): boolean {
  return spec !== null && (spec.groups.length > 0 || spec.throttle !== null);
}

interface Entry {
  limits: FunctionLimits | null;
  fetchedAt: number;
}

/** Caches a source's answers for `ttlMs`; a stale answer stands in while the source is down. */
export class LimitsCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly source: FlowLimitsSource,
    private readonly ttlMs: number,
    private readonly clock: Clock = systemClock,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly maxEntries = 100_000,
  ) {}

  /**
   * The limits of each function (null = not synced), fetching the missing and stale ones in one
   * call. Functions with no answer at all (never fetched, source down) are left out of the map;
   * a failed fetch is reported to `onError`, never thrown.
   */
  async get(functions: FunctionKey[]): Promise<Map<string, FunctionLimits | null>> {
    const now = this.clock.now();
    const out = new Map<string, FunctionLimits | null>();
    const wanted = new Map<string, FunctionKey>();
    for (const f of functions) {
      const key = cacheKey(f);
      const e = this.entries.get(key);
      if (e) out.set(key, e.limits);
      if (!e || now - e.fetchedAt >= this.ttlMs) wanted.set(key, f);
    }
    if (wanted.size === 0) return out;
    const list = [...wanted.values()];
    try {
      const got = await this.source.fetch(list);
      if (this.entries.size + list.length > this.maxEntries) this.entries.clear();
      list.forEach((f, i) => {
        const limits = got[i] ?? null;
        const key = cacheKey(f);
        this.entries.set(key, { limits, fetchedAt: now });
        out.set(key, limits);
      });
    } catch (err) {
      // Stale answers (already in `out`) stand in; functions never answered stay out, and the
      // caller leaves their partitions alone until the source answers.
      this.onError(err);
    }
    return out;
  }
}

export function cacheKey(f: FunctionKey): string {
  return `${f.accountId}\n${f.environmentId}\n${f.functionId}`;
}

const SCOPE_OF: Partial<Record<ConcurrencyScope, Scope>> = {
  [ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION]: "f",
  [ConcurrencyScope.CONCURRENCY_SCOPE_ENVIRONMENT]: "e",
  [ConcurrencyScope.CONCURRENCY_SCOPE_ACCOUNT]: "a",
};

/** Limits from RunnerService.GetFlowLimits. */
export function grpcLimitsSource(client: RunnerServiceClient, deadlineMs: number): FlowLimitsSource {
  return {
    async fetch(functions) {
      const res = await callUnary(client.getFlowLimits.bind(client), { functions }, deadlineMs);
      return functions.map((_, i) => {
        const f = res.functions[i];
        if (!f?.found) return null;
        const t = f.throttle;
        return {
          concurrency: f.concurrency.flatMap((c) => {
            const scope = SCOPE_OF[c.scope];
            return scope ? [{ scope, keyed: c.keyed, limit: c.limit }] : [];
          }),
          throttle:
            t && t.limit > 0 ? { limit: t.limit, periodMs: Number(t.periodMs), burst: t.burst } : null,
        };
      });
    },
  };
}

/** A source for tests and benchmarks: fixed limits per function id (absent = not synced). */
export function staticLimitsSource(byFunction: Record<string, FunctionLimits> = {}): FlowLimitsSource {
  return { fetch: async (functions) => functions.map((f) => byFunction[f.functionId] ?? null) };
}
