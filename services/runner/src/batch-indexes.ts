// The function indexes one Kafka batch matches its events against. An environment whose functions
// the registry holds parsed is matched at once, against that copy, and its version is checked
// before anything is written for it, without a read of its own where it can: admit.lua compares
// it before it decides the environment's pairs, and only an environment with no pairs to admit
// (its events matched nothing, or only debounced or batched functions) gets its version read,
// right after matching. An environment found changed is loaded again and the chunk matched again,
// so an event always meets the functions synced before it was sent, one Redis round trip sooner.

import type { FunctionIndex } from "./match.js";
import type { StoredFunction } from "./model.js";
import type { Registry } from "./registry.js";

export class BatchIndexes {
  /** Each environment's index, for matchEvent. */
  readonly indexes = new Map<string, FunctionIndex>();
  /** Environments matched against a cached copy not checked yet: the version it was read at. */
  private readonly unchecked = new Map<string, string>();
  /** Environments found changed: loaded from Redis next, never taken from the cache again. */
  private readonly changed = new Set<string>();

  constructor(
    private readonly registry: Pick<Registry, "cached" | "loadMany">,
    /** The index of a function list (the same list, the same index). */
    private readonly indexOf: (fns: StoredFunction[]) => FunctionIndex,
  ) {}

  /** Gives each environment an index: a cached copy (unchecked), else loaded (one round trip). */
  async prepare(environmentIds: Iterable<string>): Promise<void> {
    const missing: string[] = [];
    for (const env of environmentIds) {
      if (this.indexes.has(env)) continue;
      const hit = this.changed.has(env) ? undefined : this.registry.cached(env);
      if (hit) {
        this.indexes.set(env, this.indexOf(hit.fns));
        this.unchecked.set(env, hit.version);
      } else {
        missing.push(env);
      }
    }
    if (missing.length === 0) return;
    for (const [env, fns] of await this.registry.loadMany(missing)) this.indexes.set(env, this.indexOf(fns));
  }

  /** The version an environment's index was read at, while unchecked; undefined once checked. */
  uncheckedVersion(environmentId: string): string | undefined {
    return this.unchecked.get(environmentId);
  }

  /**
   * Reads the versions of the unchecked environments among `environmentIds` (one round trip, none
   * when all are checked) and returns those that changed, whose indexes it replaces.
   */
  async check(environmentIds: Iterable<string>): Promise<string[]> {
    const todo = [...new Set(environmentIds)].filter((env) => this.unchecked.has(env));
    if (todo.length === 0) return [];
    const loaded = await this.registry.loadMany(todo);
    const changed: string[] = [];
    for (const env of todo) {
      this.unchecked.delete(env);
      const index = this.indexOf(loaded.get(env) ?? []);
      if (index === this.indexes.get(env)) continue;
      this.indexes.set(env, index);
      changed.push(env);
    }
    return changed;
  }

  /** Environments admit.lua found at the version they were matched at. */
  checked(environmentIds: Iterable<string>): void {
    for (const env of environmentIds) this.unchecked.delete(env);
  }

  /** Environments admit.lua found changed: the next `prepare` loads them. */
  drop(environmentIds: Iterable<string>): void {
    for (const env of environmentIds) {
      this.indexes.delete(env);
      this.unchecked.delete(env);
      this.changed.add(env);
    }
  }
}
