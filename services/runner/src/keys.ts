// The runner's Redis keys. All start with `r:` (the runner owns them) and carry the environment
// id as their hash tag, so one environment's keys share a Redis Cluster slot and the sync script
// touches one slot.

/** Function id -> entry JSON {accountId, appId, fn}. */
export const fnsKey = (envId: string) => `r:{${envId}}:fns`;
/** Function id -> owning app id. */
export const ownersKey = (envId: string) => `r:{${envId}}:owners`;
/** App id -> app JSON {accountId, url, sdk, framework}. */
export const appsKey = (envId: string) => `r:{${envId}}:apps`;
/** The run id an (event, function) pair started; expires after 24 h. */
export const idemKey = (envId: string, fnId: string, eventId: string) =>
  `r:{${envId}}:idem:${fnId}:${eventId}`;
/** The run id that took a function's `idempotency` key value (24 h). */
export const userIdemKey = (envId: string, fnId: string, keyHash: string) =>
  `r:{${envId}}:uidem:${fnId}:${keyHash}`;
/** A function's `rateLimit` window for one key value: eventId -> ms admitted. */
export const rateKey = (envId: string, fnId: string, keyHash: string) => `r:{${envId}}:rl:${fnId}:${keyHash}`;
/** An unused key of the environment's slot, passed where a script needs a key it will not touch. */
export const placeholderKey = (envId: string) => `r:{${envId}}:-`;
