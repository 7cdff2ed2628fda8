// Trigger `if` expressions: CEL over `event`, evaluated with @bufbuild/cel. An expression that
// errors at evaluation (a missing field, a type mismatch) does not match, like Inngest, where
// `event.data.missing == 1` is simply false.

import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { celComplexityProblem } from "@stepline/internal/cel-limits";

/** The variables an expression sees: `event` (triggers, waits), and `async` (a wait's candidate). */
export interface CelVars {
  event: unknown;
  async?: unknown;
}

type Program = (bindings: CelVars) => unknown;

const env = celEnv();
// Compiled programs by source. Bounded: a registry holds few distinct expressions, but a
// long-lived process sees every sync, so the cache is dropped wholesale when it grows too big.
const cache = new Map<string, Program>();
const CACHE_MAX = 10_000;

/** Parses a CEL expression; returns the parser's message when it is not valid CEL, else null. */
export function celSyntaxError(source: string): string | null {
  try {
    compile(source);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** True when `source` evaluates to exactly `true` for `bindings`; false on any evaluation error. */
export function celMatches(source: string, bindings: CelVars): boolean {
  let program: Program;
  try {
    program = compile(source);
  } catch {
    return false;
  }
  try {
    const result = program(bindings);
    return !isCelError(result) && result === true;
  } catch {
    // An evaluation that throws (rather than answering a CEL error) must never stall a partition.
    return false;
  }
}

/**
 * The value of `source` for `bindings` when it is a string, a number or a boolean (CEL ints come
 * back as bigints); undefined on any error or for another type of result.
 */
export function celScalar(source: string, bindings: CelVars): string | number | bigint | boolean | undefined {
  let result: unknown;
  try {
    result = compile(source)(bindings);
  } catch {
    return undefined;
  }
  if (isCelError(result)) return undefined;
  const t = typeof result;
  return t === "string" || t === "number" || t === "bigint" || t === "boolean"
    ? (result as string | number | bigint | boolean)
    : undefined;
}

function compile(source: string): Program {
  let program = cache.get(source);
  if (program) return program;
  const parsed = parse(source);
  // Refused at sync already; a wait's expression reaches here from the executor, checked there too.
  const problem = celComplexityProblem(source, parsed);
  if (problem) throw new Error(`the expression ${problem}`);
  const planned = plan(env, parsed);
  program = (bindings) => planned(bindings as unknown as Parameters<typeof planned>[0]);
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(source, program);
  return program;
}
