// Event keys and signing keys: generation with crypto randomness, and the SDK's hashed form of a
// signing key. Pure functions; nothing here logs or stores a key.
import { createHash, randomBytes } from "node:crypto";

/** A new event key: 64 lowercase hex characters (256 random bits). */
export function newEventKey(): string {
  return randomBytes(32).toString("hex");
}

/**
 * The `<env>` part of a signing key: the environment name lowercased with every run of other
 * characters turned into `_`. The SDK strips the prefix with `^signkey-[\w]+-`, so the slug must
 * be `\w` only (a `-` inside it would make the SDK cut the key in the wrong place).
 */
export function signingKeySlug(envName: string): string {
  const slug = envName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 32);
  return slug || "prod";
}

/** A new signing key `signkey-<slug>-<64 hex>`; the secret is the hex part, as text. */
export function newSigningKey(envName: string): string {
  return `signkey-${signingKeySlug(envName)}-${randomBytes(32).toString("hex")}`;
}

const SIGNING_KEY = /^(signkey-\w+-)((?:[0-9a-fA-F]{2})+)$/;

/** True when `s` has the shape of a signing key (raw or hashed): `signkey-<slug>-<hex>`. */
export function isSigningKeyShaped(s: string): boolean {
  return SIGNING_KEY.test(s);
}

/**
 * The hashed form the SDK sends as its bearer token: the same `signkey-<slug>-` prefix followed by
 * hex(SHA-256(bytes of the hex part)). Returns null for a string that is not signing-key shaped.
 */
export function hashSigningKey(key: string): string | null {
  const m = SIGNING_KEY.exec(key);
  if (!m?.[1] || !m[2]) return null;
  return `${m[1]}${createHash("sha256").update(Buffer.from(m[2], "hex")).digest("hex")}`;
}

/** The index form of an event key (SHA-256 hex), so lookup indexes never hold the key itself. */
export function eventKeyDigest(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}
