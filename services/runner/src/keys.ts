// The runner's Redis keys. All start with `r:` (the runner owns them) and carry the environment
// id as their hash tag, so one environment's keys share a Redis Cluster slot and the sync script
// touches one slot.

/** Function id -> entry JSON {accountId, appId, fn}. */
export const fnsKey = (envId: string) => `r:{${envId}}:fns`;
/** Function id -> owning app id. */
export const ownersKey = (envId: string) => `r:{${envId}}:owners`;
/** A counter every sync that changes the environment's registry increments (caches key on it). */
export const versionKey = (envId: string) => `r:{${envId}}:ver`;
/** App id -> app JSON {accountId, url, sdk, framework}. */
export const appsKey = (envId: string) => `r:{${envId}}:apps`;
/** App id -> the last sync's outcome {atMs, url, error} (error "" when it was taken). */
export const syncsKey = (envId: string) => `r:{${envId}}:syncs`;
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
/** A function's debounce (per key value): its id, status, latest event and due time. */
export const debounceKey = (envId: string, fnId: string, keyHash: string) =>
  `r:{${envId}}:db:${fnId}:${keyHash}`;
/** The event a debounce fired with (24 h), so a repeated fire starts the same run. */
export const debounceFiredKey = (envId: string, fnId: string, id: string) => `r:{${envId}}:dbf:${fnId}:${id}`;
/** The id of a function's open batch (per key value). */
export const batchPointerKey = (envId: string, fnId: string, keyHash: string) =>
  `r:{${envId}}:bp:${fnId}:${keyHash}`;
/** A batch's events (JSON, in order). */
export const batchListKey = (envId: string, fnId: string, id: string) => `r:{${envId}}:b:${fnId}:${id}`;
/** A batch's metadata: created (epoch ms), started. */
export const batchMetaKey = (envId: string, fnId: string, id: string) => `r:{${envId}}:bm:${fnId}:${id}`;
