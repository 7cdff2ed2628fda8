// The runner's domain types: what a sync carries once validated, and what the registry stores.
// Proto messages are translated to and from these in server.ts only.

/** A trigger after validation: an event name (maybe a `prefix/*` wildcard, maybe with a CEL `if`) or a cron. */
export type TriggerDef =
  | { kind: "event"; event: string; expression: string }
  | { kind: "cron"; cron: string };

/** One `cancelOn` entry: an event (with an optional CEL `if`) that cancels a run. */
export interface CancelDef {
  event: string;
  /** CEL over `event` (the run's trigger) and `async` (the candidate); "" = any. */
  expression: string;
  /** Only within this long of the run's start; 0 = its whole life. */
  timeoutMs: number;
}

/** Who shares a concurrency limit (the SDK's `scope`). */
export type ConcurrencyScopeName = "fn" | "env" | "account";

/**
 * The flow control of a function config, validated. Durations are in ms; keys and `if`s are CEL
 * ("" = none). Every field is optional in the SDK; absent ones are null or empty here.
 */
export interface FlowConfig {
  /** At most two; limit 0 = no limit (Inngest: "the account's maximum"). */
  concurrency: Array<{ limit: number; scope: ConcurrencyScopeName; key: string }>;
  throttle: { limit: number; periodMs: number; burst: number; key: string } | null;
  rateLimit: { limit: number; periodMs: number; key: string } | null;
  debounce: { periodMs: number; key: string; timeoutMs: number } | null;
  batchEvents: { maxSize: number; timeoutMs: number; key: string; if: string } | null;
  /** `priority.run`: CEL giving seconds (-600..600). */
  priority: string;
  singleton: { mode: "skip" | "cancel"; key: string } | null;
  /** CEL giving the run's idempotency key (24 h). */
  idempotency: string;
}

/** One function of a sync, validated and normalised. */
export interface FunctionDef {
  /** `<appId>-<fnId>` as the SDK sends it. */
  id: string;
  name: string;
  triggers: TriggerDef[];
  /** The app URL to call, including `?fnId=..&stepId=step`. */
  url: string;
  /** Retries after the first attempt (0..20). */
  retries: number;
  /** The SDK's whole function config as canonical JSON (sorted keys), `{}` when absent. */
  rawJson: string;
  /** `cancelOn`: events that cancel the function's runs (from the raw config). */
  cancel: CancelDef[];
  /** `timeouts.start` and `timeouts.finish` in ms, 0 when not set (from the raw config). */
  startTimeoutMs: number;
  finishTimeoutMs: number;
  /** Flow control (from the raw config); absent in registries synced before it existed. */
  flow?: FlowConfig;
  /** A hash of every field above: changes exactly when the function's config changes. */
  version: string;
}

/** A validated SyncApp request. */
export interface AppSync {
  accountId: string;
  environmentId: string;
  appId: string;
  url: string;
  sdk: string;
  framework: string;
  functions: FunctionDef[];
}

/** A function as the registry holds it for an environment. */
export interface StoredFunction {
  accountId: string;
  appId: string;
  fn: FunctionDef;
}

/** The raw shape of a SyncApp request (the proto message's fields), before validation. */
export interface SyncInput {
  accountId: string;
  environmentId: string;
  appId: string;
  url: string;
  sdk: string;
  framework: string;
  functions: Array<{
    id: string;
    name: string;
    triggers: Array<{ event: string; expression: string; cron: string }>;
    url: string;
    retries: number;
    rawJson: string;
  }>;
}
