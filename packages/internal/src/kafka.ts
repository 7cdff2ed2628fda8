// Kafka client setup: one kafkajs instance per process, logging through pino, with topic and
// group names derived from one prefix so several clusters (or tests) can share a broker.

import type { LogEntry } from "kafkajs";
import { Kafka, logLevel } from "kafkajs";
import type { Logger } from "./log.js";

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
