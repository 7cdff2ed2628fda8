// What a username and a new password must be; shared by the user store and the CLI (which checks
// before it sends, so a short password is refused as bad usage).
import { ValidationError } from "@stepline/internal/errors";

export const MIN_PASSWORD_LENGTH = 12;
/** Bounds the work one sign-in may ask of argon2. */
export const MAX_PASSWORD_LENGTH = 1024;
export const USERNAME = /^[A-Za-z0-9._@-]{1,64}$/;

/** Checks a username: 1 to 64 of letters, digits, `.`, `_`, `@`, `-`. */
export function validateUsername(username: string): string {
  if (!username) throw new ValidationError("username is required");
  if (!USERNAME.test(username)) {
    throw new ValidationError(
      "username must be 1 to 64 characters of letters, digits, '.', '_', '@' and '-'",
    );
  }
  return username;
}

/** Checks a new password's length (characters, not bytes). */
export function checkPassword(password: string): void {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH) {
    throw new ValidationError(
      `the password is too short (${length} characters; at least ${MIN_PASSWORD_LENGTH})`,
    );
  }
  if (length > MAX_PASSWORD_LENGTH) {
    throw new ValidationError(`the password is too long (at most ${MAX_PASSWORD_LENGTH} characters)`);
  }
}
