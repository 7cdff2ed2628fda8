// One pino root logger per process, bound to {service, version}; components take child loggers.
// Keys and signatures are redacted wherever they appear as fields.
import { pino } from "pino";

export type Logger = pino.Logger;

const REDACT = [
  "key",
  "eventKey",
  "signingKey",
  "signature",
  "authorization",
  "*.key",
  "*.eventKey",
  "*.signingKey",
  "*.signature",
  "*.authorization",
  "headers.authorization",
  "headers['x-inngest-signature']",
];

/** Creates the process's root logger. */
export function createLogger(service: string, level: string, version = "0.1.0"): Logger {
  return pino({
    level,
    base: { service, version },
    redact: { paths: REDACT, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
