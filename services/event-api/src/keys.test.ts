import hashjs from "hash.js";
import { describe, expect, it } from "vitest";
import { hashSigningKey, isSigningKeyShaped, newEventKey, newSigningKey, signingKeySlug } from "./keys.js";

// The SDK's own recipe (helpers/strings.js), with the same hashing library it uses.
function sdkHash(key: string): string {
  const prefix = key.match(/^signkey-[\w]+-/)?.shift() ?? "";
  const hex = key.replace(/^signkey-[\w]+-/, "");
  return `${prefix}${hashjs.sha256().update(hex, "hex").digest("hex")}`;
}

describe("keys", () => {
  it("makes event keys of 64 hex characters, different each time", () => {
    const a = newEventKey();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(newEventKey()).not.toBe(a);
  });

  it("makes signing keys signkey-<slug>-<64 hex> whose prefix the SDK strips correctly", () => {
    for (const name of ["production", "Staging EU", "feature/login-v2", "---"]) {
      const key = newSigningKey(name);
      expect(key).toMatch(/^signkey-\w+-[0-9a-f]{64}$/);
      expect(key.replace(/^signkey-[\w]+-/, "")).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(signingKeySlug("Staging EU")).toBe("staging_eu");
    expect(signingKeySlug("---")).toBe("prod");
  });

  it("hashes a signing key exactly as the SDK does for its bearer token", () => {
    const key = newSigningKey("production");
    expect(hashSigningKey(key)).toBe(sdkHash(key));
    expect(hashSigningKey(key)).toMatch(/^signkey-production-[0-9a-f]{64}$/);
  });

  it("refuses to hash strings that are not signing keys", () => {
    expect(hashSigningKey("not-a-key")).toBeNull();
    expect(hashSigningKey("signkey-prod-xyz")).toBeNull();
    expect(isSigningKeyShaped("signkey-prod-abc")).toBe(false);
    expect(isSigningKeyShaped(`signkey-prod-${"ab".repeat(32)}`)).toBe(true);
  });
});
