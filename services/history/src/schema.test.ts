import { sqlString } from "@stepline/internal/clickhouse";
import { describe, expect, it } from "vitest";
import type { StepRow } from "./rows.js";
import { rowsOf } from "./rows.js";
import { DEAD_LETTERS, dropPartitionsBefore, ensureSchema, TABLES } from "./schema.js";
import { runRecord, stepRecord, useTestDatabase } from "./test-support.js";

const t = useTestDatabase();

async function tableNames(): Promise<string[]> {
  const rs = await t.ch.query({
    query: `SELECT name FROM system.tables WHERE database = ${sqlString(t.database)} ORDER BY name`,
    format: "JSONEachRow",
  });
  return (await rs.json<{ name: string }>()).map((r) => r.name);
}

describe("schema", () => {
  it("can be created again over an existing schema without error or data loss", async () => {
    const run = runRecord();
    await t.store.insert(
      "runs",
      rowsOf([{ traceParent: "", record: { $case: "run", value: run } }]).rows.runs,
    );
    await ensureSchema(t.ch, t.database);
    await ensureSchema(t.ch, t.database);
    expect(await tableNames()).toEqual([...TABLES, DEAD_LETTERS].sort());
    expect((await t.store.getRun(run.environmentId, run.runId))?.runId).toBe(run.runId);
  });

  it("adds a column a newer release needs to a table made before it, keeping the rows", async () => {
    const step = stepRecord({ environmentId: "env_upgrade" });
    await t.ch.command({ query: `ALTER TABLE ${t.database}.steps DROP COLUMN started_at_ms` });
    const { started_at_ms: _new, ...oldRow } = rowsOf([
      { traceParent: "", record: { $case: "step", value: step } },
    ]).rows.steps[0] as StepRow;
    await t.ch.insert({ table: `${t.database}.steps`, values: [oldRow], format: "JSONEachRow" });

    await ensureSchema(t.ch, t.database);
    await ensureSchema(t.ch, t.database);

    const [got] = await t.store.listSteps("env_upgrade", step.runId);
    expect(got).toMatchObject({ stepId: step.stepId, startedAtMs: 0, atMs: step.atMs });
  });

  it("drops whole months older than the cutoff and keeps newer ones", async () => {
    const old = runRecord({ environmentId: "env_retention", startedAtMs: Date.UTC(2023, 0, 5) });
    const recent = runRecord({ environmentId: "env_retention", startedAtMs: Date.UTC(2023, 2, 5) });
    const { rows } = rowsOf(
      [old, recent].map((value) => ({ traceParent: "", record: { $case: "run" as const, value } })),
    );
    await t.store.insert("runs", rows.runs);
    await t.store.insert("event_runs", rows.event_runs);

    const dropped = await dropPartitionsBefore(t.ch, t.database, 202302);

    expect(dropped.sort()).toEqual(["event_runs:202301", "runs:202301"]);
    expect(await t.store.getRun("env_retention", old.runId)).toBeNull();
    expect((await t.store.getRun("env_retention", recent.runId))?.runId).toBe(recent.runId);
  });
});

describe("sqlString", () => {
  const awkward = [
    "plain",
    "",
    "it's",
    "''",
    "back\\slash",
    "\\'",
    "trailing backslash\\",
    "line\nbreak\r\nand\ttab",
    "nul\0byte",
    "unicode: é ß 漢字 😀 \u2028",
    "'); DROP DATABASE x; --",
    "{x:String}",
    "\\n is not a newline",
  ];

  it.each(awkward)("round-trips %j through a ClickHouse literal unchanged", async (value) => {
    const rs = await t.ch.query({ query: `SELECT ${sqlString(value)} AS v`, format: "JSONEachRow" });
    expect(await rs.json<{ v: string }>()).toEqual([{ v: value }]);
  });

  it("matches stored awkward event ids exactly when used in a WHERE clause", async () => {
    const records = awkward
      .filter((v) => v !== "")
      .map((eventId) => runRecord({ environmentId: "env_escape", eventId }));
    const { rows } = rowsOf(
      records.map((value) => ({ traceParent: "", record: { $case: "run" as const, value } })),
    );
    await t.store.insert("runs", rows.runs);
    await t.store.insert("event_runs", rows.event_runs);
    for (const r of records) {
      const runs = await t.store.listEventRuns("env_escape", r.eventId);
      expect(runs.map((x) => [x.runId, x.eventId])).toEqual([[r.runId, r.eventId]]);
    }
  });
});
