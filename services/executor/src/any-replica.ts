// Calls that any queue replica can answer (Enqueue: a replica writes into any shard and wakes its
// owner), made through one client or call stream per replica. Calls rotate over the replicas, and
// one that is unavailable is skipped for the next.
import { UnavailableError } from "@stepline/internal/errors";

/** Spreads calls over `clients` round-robin, failing over to the next one on UnavailableError. */
export class AnyReplica<C> {
  private next = 0;

  constructor(private readonly clients: readonly C[]) {
    if (clients.length === 0) throw new Error("no clients");
  }

  /** Runs `call` on one client; on UnavailableError tries the others in turn, else rethrows. */
  async call<T>(call: (client: C) => Promise<T>): Promise<T> {
    const n = this.clients.length;
    const start = this.next;
    this.next = (this.next + 1) % n;
    let last: unknown;
    for (let k = 0; k < n; k++) {
      try {
        return await call(this.clients[(start + k) % n] as C);
      } catch (err) {
        // Any other error (a rejected item, say) would be answered the same by every replica.
        if (!(err instanceof UnavailableError)) throw err;
        last = err;
      }
    }
    throw last;
  }
}
