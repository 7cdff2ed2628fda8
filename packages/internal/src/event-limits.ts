// Limits every event shares, whoever produces it: event-api for the events it receives, the
// executor for Stepline's own (function finished, failed, cancelled, invoked).

/** The largest event, serialized as stored (id and ts filled in). */
export const EVENT_MAX_BYTES = 512 * 1024;
