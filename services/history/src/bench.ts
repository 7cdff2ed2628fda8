// `npm run bench:history`: how fast the dashboard's run list pages with a million runs in history.
// Fills a scratch database on a ClickHouse server (generated server-side with numbers(), so the
// fill is quick) and times HistoryStore.listRuns pages: the first page, a page deep in the list
// (by cursor), and pages filtered by status, function, time range and event. Prints one line per
// query: the median and the slowest of `--repeat` runs. The database is dropped at the end.
import { parseArgs } from "node:util";
import { createClickHouse } from "@stepline/internal/clickhouse";
import { ulidTimePrefix } from "@stepline/internal/ids";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { ensureSchema } from "./schema.js";
import type { RunFilter } from "./store.js";
import { HistoryStore } from "./store.js";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "1000000" },
    clickhouse: { type: "string", default: "http://127.0.0.1:8123" },
    repeat: { type: "string", default: "5" },
  },
});
const RUNS = Number(args.runs);
const REPEAT = Number(args.repeat);
const ch = createClickHouse(args.clickhouse ?? "");
const database = `bench_history_${Date.now()}`;
const store = new HistoryStore(ch, database);
const ENV = "env_bench";
// One run a second, the newest now (as the windows of ListRuns expect of real ULIDs).
const T0 = Date.now() - RUNS * 1000;
const FUNCTIONS = 20;

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** SQL for the ULID of run `number`: its start time in Crockford base32, then a fixed tail. */
const ULID_SQL = `concat(${Array.from(
  { length: 10 },
  (_, i) =>
    `substring('${CROCKFORD}', bitAnd(bitShiftRight(${T0} + number * 1000, ${45 - 5 * i}), 31) + 1, 1)`,
).join(", ")}, '0000000000000000')`;
const print = (line: string) => process.stdout.write(`${line}\n`);
const runId = (n: number) => `${ulidTimePrefix(T0 + n * 1000)}0000000000000000`;

async function fill(): Promise<void> {
  await ensureSchema(ch, database);
  // Every run twice, as history gets it: Running (version 1), then its end (version 2; one in ten
  // Failed, one in a thousand still Running).
  for (const version of [1, 2]) {
    await ch.command({
      query: `INSERT INTO ${database}.runs
        SELECT ${ULID_SQL}, 'acct', '${ENV}',
          concat('fn-', toString(number % ${FUNCTIONS})), concat('evt', toString(number)),
          ${version === 1 ? RunStatus.RUN_STATUS_RUNNING : `multiIf(number % 1000 = 7, ${RunStatus.RUN_STATUS_RUNNING}, number % 10 = 3, ${RunStatus.RUN_STATUS_FAILED}, ${RunStatus.RUN_STATUS_COMPLETED})`},
          ${T0} + number * 1000, ${version === 1 ? "0" : `${T0} + number * 1000 + 100 + number % 900`},
          ${version === 1 ? "''" : `'{"ok":true,"total":42}'`}, '', ${version}
        FROM system.numbers LIMIT ${RUNS}`,
    });
  }
  await ch.command({
    query: `INSERT INTO ${database}.event_runs
      SELECT '${ENV}', concat('evt', toString(number)), ${ULID_SQL}, ${T0} + number * 1000
      FROM system.numbers LIMIT ${RUNS}`,
  });
}

const base: RunFilter = {
  environmentId: ENV,
  statuses: [],
  functionId: "",
  eventId: "",
  startedAfterMs: 0,
  startedBeforeMs: 0,
  limit: 50,
  cursor: "",
};
const mid = Buffer.from(runId(Math.floor(RUNS / 2)), "utf8").toString("base64url");

const QUERIES: Array<[string, Partial<RunFilter>]> = [
  ["first page (50), no filter", {}],
  ["page from the middle (cursor)", { cursor: mid }],
  ["status Failed", { statuses: [RunStatus.RUN_STATUS_FAILED] }],
  ["status Running (one in a thousand)", { statuses: [RunStatus.RUN_STATUS_RUNNING] }],
  ["function + status Completed", { functionId: "fn-4", statuses: [RunStatus.RUN_STATUS_COMPLETED] }],
  ["last hour of runs", { startedAfterMs: T0 + (RUNS - 3600) * 1000 }],
  ["one day, a week back", { startedAfterMs: T0 + 86_400_000, startedBeforeMs: T0 + 2 * 86_400_000 }],
  ["by event id", { eventId: `evt${Math.floor(RUNS / 3)}` }],
];

async function time(filter: RunFilter): Promise<{ ms: number[]; runs: number }> {
  const ms: number[] = [];
  let runs = 0;
  for (let i = 0; i < REPEAT; i++) {
    const start = performance.now();
    runs = (await store.listRuns(filter)).runs.length;
    ms.push(performance.now() - start);
  }
  return { ms: ms.sort((a, b) => a - b), runs };
}

try {
  const fillStart = performance.now();
  await fill();
  print(
    `filled ${RUNS.toLocaleString("en")} runs (2 versions each) in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`,
  );
  print(`| query | runs on the page | median ms | slowest ms |\n|---|---|---|---|`);
  for (const [name, over] of QUERIES) {
    const { ms, runs } = await time({ ...base, ...over });
    const median = ms[Math.floor(ms.length / 2)] ?? 0;
    print(`| ${name} | ${runs} | ${median.toFixed(1)} | ${(ms[ms.length - 1] ?? 0).toFixed(1)} |`);
  }
} finally {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` });
  await ch.close();
}
