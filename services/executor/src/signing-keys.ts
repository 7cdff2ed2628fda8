// Signing keys of environments, fetched from event-api's TenantService and cached in memory for a
// while: one lookup per environment and TTL instead of one per call. A rotated key is picked up
// when the entry expires (a call signed with the old key gets 401 and is retried).

import type { Clock } from "@stepline/internal/clock";

interface Entry {
  key: string;
  expiresAtMs: number;
}

/** Caches `fetchKey(environmentId)` results for `ttlMs`, one lookup in flight per environment. */
export class SigningKeys {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly fetchKey: (environmentId: string) => Promise<string>,
    private readonly ttlMs: number,
    private readonly clock: Clock,
  ) {}

  /** The environment's signing key (`signkey-<env>-<hex>`); rejects when it cannot be fetched. */
  get(environmentId: string): Promise<string> {
    const hit = this.cache.get(environmentId);
    if (hit && hit.expiresAtMs > this.clock.now()) return Promise.resolve(hit.key);
    const pending = this.inflight.get(environmentId);
    if (pending) return pending;
    const p = this.fetchKey(environmentId)
      .then((key) => {
        this.cache.set(environmentId, { key, expiresAtMs: this.clock.now() + this.ttlMs });
        return key;
      })
      .finally(() => this.inflight.delete(environmentId));
    this.inflight.set(environmentId, p);
    return p;
  }

  /** Forgets a key, e.g. after the app rejected a signature made with it. */
  forget(environmentId: string): void {
    this.cache.delete(environmentId);
  }
}
