import { createLogger } from "@stepline/internal/log";
import { describe, expect, it } from "vitest";
import { oldestKeptMonth, startRetention } from "./retention.js";
import { rowsOf } from "./rows.js";
import { runRecord, useTestDatabase } from "./test-support.js";

const t = useTestDatabase();

describe("history retention", () => {
  it("keeps the month holding the instant `days` ago, and every later one", () => {
    expect(oldestKeptMonth(Date.UTC(2026, 10, 30), 30)).toBe(202610);
    expect(oldestKeptMonth(Date.UTC(2026, 10, 30), 29)).toBe(202611);
    expect(oldestKeptMonth(Date.UTC(2026, 0, 10), 30)).toBe(202512);
  });

  it("drops the months past the retention at start, and keeps the rest", async () => {
    const now = Date.UTC(2026, 10, 30);
    const old = runRecord({ environmentId: "env_ret", startedAtMs: Date.UTC(2026, 8, 15) });
    const kept = runRecord({ environmentId: "env_ret", startedAtMs: Date.UTC(2026, 9, 15) });
    const { rows } = rowsOf(
      [old, kept].map((value) => ({ traceParent: "", record: { $case: "run", value } })),
    );
    await t.store.insert("runs", rows.runs);

    const retention = startRetention({
      ch: t.ch,
      database: t.database,
      days: 30,
      log: createLogger("history-test", "silent"),
      now: () => now,
    });
    await retention.done;
    retention.stop();

    expect(await t.store.getRun("env_ret", old.runId)).toBeNull();
    expect((await t.store.getRun("env_ret", kept.runId))?.runId).toBe(kept.runId);
  });
});
