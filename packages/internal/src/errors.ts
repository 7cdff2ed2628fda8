// The closed set of errors every service speaks, mapped once to gRPC statuses and HTTP codes.
// Anything outside the set is INTERNAL/500 and its message is hidden from callers.

import type { ServiceError } from "@grpc/grpc-js";
import { Metadata, status } from "@grpc/grpc-js";

export class ValidationError extends Error {
  override name = "ValidationError";
}
export class TooLargeError extends ValidationError {
  override name = "TooLargeError";
}
export class UnauthenticatedError extends Error {
  override name = "UnauthenticatedError";
}
export class NotFoundError extends Error {
  override name = "NotFoundError";
}
export class ConflictError extends Error {
  override name = "ConflictError";
}
export class UnavailableError extends Error {
  override name = "UnavailableError";
}
/** Another server (a user's app) could not be reached or answered badly: HTTP 502. */
export class BadGatewayError extends Error {
  override name = "BadGatewayError";
}

/** The HTTP status for an error of the closed set (500 for anything else). */
export function httpStatusOf(err: unknown): number {
  if (err instanceof TooLargeError) return 413;
  if (err instanceof ValidationError) return 400;
  if (err instanceof UnauthenticatedError) return 401;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof ConflictError) return 409;
  if (err instanceof UnavailableError) return 503;
  if (err instanceof BadGatewayError) return 502;
  return 500;
}

/** The message a caller may see: ours verbatim, anything else hidden. */
export function publicMessage(err: unknown): string {
  return httpStatusOf(err) === 500 ? "internal error" : (err as Error).message;
}

/** Converts an error to the gRPC ServiceError handed to a callback. */
export function toGrpcError(err: unknown): Partial<ServiceError> {
  const code = grpcCodeOf(err);
  const metadata = new Metadata();
  if (err instanceof TooLargeError) metadata.set("stepline-error", "too-large");
  return { code, details: publicMessage(err), metadata };
}

function grpcCodeOf(err: unknown): status {
  if (err instanceof ValidationError) return status.INVALID_ARGUMENT;
  if (err instanceof UnauthenticatedError) return status.UNAUTHENTICATED;
  if (err instanceof NotFoundError) return status.NOT_FOUND;
  if (err instanceof ConflictError) return status.ALREADY_EXISTS;
  if (err instanceof UnavailableError) return status.UNAVAILABLE;
  return status.INTERNAL;
}

/** Maps a gRPC client error back to the same closed set, so callers handle one kind of error. */
export function fromGrpcError(err: unknown): Error {
  const e = err as Partial<ServiceError>;
  const message = e.details || e.message || "unknown error";
  switch (e.code) {
    case status.INVALID_ARGUMENT:
      return e.metadata?.get("stepline-error")[0] === "too-large"
        ? new TooLargeError(message)
        : new ValidationError(message);
    case status.UNAUTHENTICATED:
      return new UnauthenticatedError(message);
    case status.NOT_FOUND:
      return new NotFoundError(message);
    case status.ALREADY_EXISTS:
    case status.ABORTED:
      return new ConflictError(message);
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return new UnavailableError(message);
    default:
      return new Error(message);
  }
}
