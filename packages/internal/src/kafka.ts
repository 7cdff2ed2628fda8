// Kafka client setup: one kafkajs instance per process, logging through pino, with topic and
// group names derived from one prefix so several clusters (or tests) can share a broker.

import { createRequire } from "node:module";
import type { LogEntry } from "kafkajs";
import { Kafka, logLevel } from "kafkajs";
import type { Logger } from "./log.js";

interface RequestQueueShape {
  pending: unknown[];
  throttledUntil: number;
  scheduleCheckPendingRequests(): void;
}

/**
 * kafkajs 2.2.4 (its last release) re-arms a timer of `throttledUntil - now` ms on every check of
 * its request queue, even with nothing pending: once the throttle is in the past that is a 1 ms
 * timer forever, per broker connection, so an idle producer or consumer burns CPU. Skipping the
 * re-arm when nothing is pending and nothing is throttled is safe: a new pending request
 * schedules its own check. Applied once, when this module loads.
 */
export function patchKafkaIdleTimer(): void {
  const require = createRequire(import.meta.url);
  const RequestQueue = require("kafkajs/src/network/requestQueue/index.js") as {
    prototype: RequestQueueShape & { __steplinePatched?: boolean };
  };
  const proto = RequestQueue.prototype;
  if (proto.__steplinePatched) return;
  const original = proto.scheduleCheckPendingRequests;
  proto.scheduleCheckPendingRequests = function (this: RequestQueueShape) {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    original.call(this);
  };
  proto.__steplinePatched = true;
}

patchKafkaIdleTimer();

export interface TopicNames {
  events: string;
  history: string;
}

/** The topic names under a prefix. */
export function topicNames(prefix: string): TopicNames {
  return { events: `${prefix}events`, history: `${prefix}history` };
}

/** The consumer group of a service under a prefix (e.g. `runner`, `history`). */
export function groupName(prefix: string, service: string): string {
  return `${prefix}stepline-${service}`;
}

/** Creates the process's Kafka client. `brokers` is a comma-separated host:port list. */
export function createKafka(brokers: string, clientId: string, log: Logger): Kafka {
  const kafkaLog = log.child({ component: "kafkajs" });
  return new Kafka({
    clientId,
    brokers: brokers.split(",").map((b) => b.trim()),
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 100, retries: 8 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...fields } = entry;
        if (level <= logLevel.ERROR) kafkaLog.error(fields, message);
        else if (level === logLevel.WARN) kafkaLog.warn(fields, message);
        else kafkaLog.debug(fields, message);
      },
  });
}
