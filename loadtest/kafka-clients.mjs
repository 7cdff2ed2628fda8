// `npm run bench:kafka`: the CPU one process spends per record produced, with kafkajs (which the
// services' consumers use) and with @platformatic/kafka (their producers: kafka-producer.ts). Both
// idempotent, acks = all, one send in flight; same broker, same records (300-byte values, 50
// keys), in alternated rounds. Needs a Kafka (`npm start -- --dev`, or --brokers).
//
// Usage: npm run bench:kafka -- [--brokers 127.0.0.1:9092] [--sends 2000] [--batch 1,32] [--rounds 2]
import { parseArgs } from "node:util";
import { createKafka } from "../packages/internal/dist/kafka.js";
import { createProducer } from "../packages/internal/dist/kafka-producer.js";
import { createLogger } from "../packages/internal/dist/log.js";

const { values: args } = parseArgs({
  options: {
    brokers: { type: "string", default: "127.0.0.1:9092" },
    sends: { type: "string", default: "2000" },
    batch: { type: "string", default: "1,32" },
    rounds: { type: "string", default: "2" },
  },
});
const SENDS = Number(args.sends);
const TOPIC = `bench-kafka-clients-${process.pid}`;
const log = createLogger("bench-kafka", "warn");
const value = Buffer.alloc(300, 97);
const keys = Array.from({ length: 50 }, (_, i) => `acct-${i}`);
const records = (n, round) => Array.from({ length: n }, (_, i) => ({ key: keys[(i + round) % 50], value }));

const kafka = createKafka(args.brokers, "bench-kafka", log);
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 8 }], waitForLeaders: true });

const kafkajs = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await kafkajs.connect();
const platformatic = createProducer({ brokers: args.brokers, clientId: "bench-kafka" });
const clients = {
  kafkajs: (batch) => kafkajs.send({ topic: TOPIC, acks: -1, messages: batch }),
  "@platformatic/kafka": (batch) =>
    platformatic.send({ messages: batch.map((r) => ({ topic: TOPIC, key: r.key, value: r.value })) }),
};

/** CPU µs per record and wall µs per send over SENDS sends of `size` records, after a warm-up. */
async function measure(send, size) {
  for (let i = 0; i < 300; i++) await send(records(size, i));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < SENDS; i++) await send(records(size, i));
  const cpu = process.cpuUsage(cpu0);
  return {
    cpuUsPerRecord: +((cpu.user + cpu.system) / (SENDS * size)).toFixed(1),
    wallUsPerSend: Math.round(((performance.now() - t0) * 1000) / SENDS),
  };
}

try {
  for (const size of args.batch.split(",").map(Number)) {
    for (let round = 1; round <= Number(args.rounds); round++) {
      for (const [client, send] of Object.entries(clients)) {
        console.log(JSON.stringify({ client, recordsPerSend: size, round, ...(await measure(send, size)) }));
      }
    }
  }
} finally {
  await kafkajs.disconnect();
  await platformatic.close();
  await admin.deleteTopics({ topics: [TOPIC] }).catch(() => undefined);
  await admin.disconnect();
}
