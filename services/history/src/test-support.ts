// Shared by this service's tests only (excluded from the build): records and a private ClickHouse
// database per test file (waiting and unique names: @stepline/internal/testing).
import { createClickHouse } from "@stepline/internal/clickhouse";
import { newId } from "@stepline/internal/ids";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { RunRecord, StepRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { afterAll, beforeAll } from "vitest";
import type { ClickHouse } from "./schema.js";
import { ensureSchema } from "./schema.js";
import { HistoryStore } from "./store.js";

/** A Running RunRecord of version 1, with `over` applied. */
export function runRecord(over: Partial<RunRecord> = {}): RunRecord {
  return {
    runId: newId(),
    accountId: "acct_1",
    environmentId: "env_1",
    functionId: "fn-hello",
    eventId: newId(),
    status: RunStatus.RUN_STATUS_RUNNING,
    startedAtMs: Date.UTC(2024, 4, 17, 12, 0, 0),
    endedAtMs: 0,
    outputJson: "",
    errorJson: "",
    version: 1,
    ...over,
  };
}

/** A completed StepRecord of attempt 0, with `over` applied. */
export function stepRecord(over: Partial<StepRecord> = {}): StepRecord {
  return {
    runId: newId(),
    accountId: "acct_1",
    environmentId: "env_1",
    stepId: "a1b2c3",
    name: "step one",
    status: StepStatus.STEP_STATUS_COMPLETED,
    attempt: 0,
    atMs: Date.UTC(2024, 4, 17, 12, 0, 1),
    outputJson: '{"data":1}',
    errorJson: "",
    startedAtMs: Date.UTC(2024, 4, 17, 12, 0, 0, 400),
    ...over,
  };
}

export interface TestDatabase {
  ch: ClickHouse;
  database: string;
  store: HistoryStore;
  /** Drops the database and closes the client. */
  drop(): Promise<void>;
}

/** A fresh database with history's schema on the ClickHouse at `url`. */
export async function createTestDatabase(url: string): Promise<TestDatabase> {
  const ch = createClickHouse(url);
  const database = uniqueTag("test_history");
  await ensureSchema(ch, database);
  return {
    ch,
    database,
    store: new HistoryStore(ch, database),
    drop: async () => {
      await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await ch.close();
    },
  };
}

/**
 * A fresh database for the calling test file, on STEPLINE_TEST_CLICKHOUSE_URL: made before its
 * tests and dropped after them. Read its fields inside tests (they exist once beforeAll ran).
 */
export function useTestDatabase(): TestDatabase {
  const url = requiredEnv("STEPLINE_TEST_CLICKHOUSE_URL");
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase(url);
  });
  afterAll(async () => {
    await db?.drop();
  });
  const current = (): TestDatabase => {
    if (!db) throw new Error("the test database is made in beforeAll");
    return db;
  };
  return {
    get ch() {
      return current().ch;
    },
    get database() {
      return current().database;
    },
    get store() {
      return current().store;
    },
    drop: () => current().drop(),
  };
}
