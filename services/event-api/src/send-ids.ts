// Deterministic ids for sent events, so a retried send never starts anything twice.
//
// A step's sends: the executor calls each step with
// `tracestate: stepline=<base64url token>` (the token names the call: run and queue item); the
// SDK forwards that header on the `POST /e` of a step.sendEvent. Events without their own id then
// get ids derived from the token and their position, so when a step is retried after its events
// were sent (the answer was lost, the step failed later) the same ids come back and the runner's
// per-event idempotency starts nothing twice.

import { createHash } from "node:crypto";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const MAX_TOKEN_BYTES = 512;

/** The send token in a `tracestate` header, or null when it holds none (or a malformed one). */
export function sendTokenOf(tracestate: string): string | null {
  for (const member of tracestate.split(",")) {
    const [key, value] = member.trim().split("=", 2);
    if (key !== "stepline" || !value || !/^[A-Za-z0-9_-]+$/.test(value)) continue;
    const token = Buffer.from(value, "base64url");
    if (token.length === 0 || token.length > MAX_TOKEN_BYTES) return null;
    return token.toString("utf8");
  }
  return null;
}

/** A generator of the ids of one request's events: the n-th call gives the n-th event's id. */
export function derivedIds(token: string): () => string {
  let n = 0;
  return () => derivedId(token, n++);
}

/** A 26-character Crockford base32 id (ULID-shaped, not time-ordered) from the token and index. */
export function derivedId(token: string, index: number): string {
  const digest = createHash("sha256").update(`stepline-send\n${token}\n${index}`).digest();
  let out = "";
  for (let i = 0; i < 26; i++) out += CROCKFORD[(digest[i] ?? 0) % 32];
  return out;
}

/**
 * The SDK's own retries of one send carry `x-inngest-event-id-seed: <ms>,<base64 of 10 random
 * bytes>`: the n-th event gets the ULID of that time and that entropy plus n (as Inngest does), so
 * a send the SDK retries after a lost answer yields the same ids. Null for a missing or
 * malformed seed.
 */
export function seededIds(seed: string): (() => string) | null {
  const m = /^(\d{1,15}),([A-Za-z0-9+/]{14}==|[A-Za-z0-9_-]{14})$/.exec(seed.trim());
  if (!m) return null;
  const ms = Number(m[1]);
  const entropy = Buffer.from(m[2] as string, m[2]?.endsWith("==") ? "base64" : "base64url");
  if (entropy.length !== 10 || ms >= 2 ** 48) return null;
  const base = BigInt(`0x${entropy.toString("hex")}`);
  let n = 0n;
  return () => encodeBase32(BigInt(ms), 10) + encodeBase32((base + n++) % 2n ** 80n, 16);
}

function encodeBase32(value: bigint, length: number): string {
  let out = "";
  let v = value;
  for (let i = 0; i < length; i++) {
    out = CROCKFORD[Number(v % 32n)] + out;
    v /= 32n;
  }
  return out;
}
