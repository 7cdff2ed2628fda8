// Helpers shared by this service's tests (excluded from the build).
import { randomBytes } from "node:crypto";

/** A test server's address from the environment (STEPLINE_TEST_*); a missing one fails loudly. */
export function requireEnv(name: string): string {
  // The one place this service's tests read the environment.
  const value = process.env[name];
  if (!value)
    throw new Error(`${name} is not set: run the tests with the test servers (npm test starts them)`);
  return value;
}

/** A short unique tag for key prefixes and topic names. */
export function uniqueTag(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
