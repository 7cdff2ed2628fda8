// Types of kafka.mjs for the TypeScript test harness.
export function ensureTopics(brokers: string, prefix?: string): Promise<string[]>;
