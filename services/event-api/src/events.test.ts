import { TooLargeError, ValidationError } from "@stepline/internal/errors";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { describe, expect, it } from "vitest";
import {
  buildRecords,
  encodeRecord,
  eventIdProblem,
  MAX_EVENT_BYTES,
  parseJsonBody,
  prepareEvents,
} from "./events.js";

const NOW = 1_700_000_000_000;
let counter = 0;
const ids = () => `ID${++counter}`;

function rejects(body: unknown, message: RegExp, kind: typeof ValidationError = ValidationError) {
  let caught: unknown;
  try {
    prepareEvents(body, NOW, ids);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(kind);
  expect((caught as Error).message).toMatch(message);
}

describe("prepareEvents", () => {
  it("fills in a ULID-style id and the receive time for an event without them", () => {
    const [ev] = prepareEvents({ name: "shop/order.placed", data: { n: 1 } }, NOW, () => "01NEWID");
    expect(ev?.id).toBe("01NEWID");
    expect(JSON.parse(ev?.json ?? "")).toEqual({
      name: "shop/order.placed",
      data: { n: 1 },
      id: "01NEWID",
      ts: NOW,
    });
  });

  it("keeps the event's own id, ts, v and user, and drops unknown fields", () => {
    const [ev] = prepareEvents(
      { name: "a/b", id: "order-1", ts: 123.9, v: "2024-01", user: { id: "u" }, extra: true },
      NOW,
      ids,
    );
    expect(ev?.id).toBe("order-1");
    expect(JSON.parse(ev?.json ?? "")).toEqual({
      name: "a/b",
      data: {},
      id: "order-1",
      ts: 123,
      v: "2024-01",
      user: { id: "u" },
    });
  });

  it("treats null data, id, ts, v and user as absent", () => {
    const [ev] = prepareEvents(
      { name: "a/b", data: null, id: null, ts: null, v: null, user: null },
      NOW,
      () => "X",
    );
    expect(JSON.parse(ev?.json ?? "")).toEqual({ name: "a/b", data: {}, id: "X", ts: NOW });
  });

  it("accepts an array and keeps the events in order", () => {
    const evs = prepareEvents([{ name: "a" }, { name: "b", id: "given" }, { name: "c" }], NOW, ids);
    expect(evs.map((e) => JSON.parse(e.json).name)).toEqual(["a", "b", "c"]);
    expect(evs[1]?.id).toBe("given");
  });

  it("rejects a body that is neither an object nor an array", () => {
    rejects("hello", /event object or an array of events, got a string/);
    rejects(42, /got a number/);
    rejects(null, /got null/);
  });

  it("rejects an empty array", () => rejects([], /empty array/));

  it("rejects an array element that is not an object, naming its index", () =>
    rejects([{ name: "a" }, 5], /events\[1\] must be a JSON object, got a number/));

  it("rejects a missing, non-string or empty name, naming the index and field", () => {
    rejects({ data: {} }, /event\.name is required/);
    rejects([{ name: "ok" }, { name: 7 }], /events\[1\]\.name must be a string, got a number/);
    rejects([{ name: "  " }], /events\[0\]\.name must not be empty/);
    rejects({ name: "x".repeat(300) }, /event\.name is too long/);
  });

  it("rejects reserved inngest/ names", () => {
    rejects({ name: "inngest/function.finished" }, /"inngest\/function\.finished" is reserved/);
    rejects([{ name: "a" }, { name: "Inngest/scheduled.timer" }], /events\[1\]\.name .* is reserved/);
  });

  it("rejects data that is an array or a string, naming the index and field", () => {
    rejects(
      [{ name: "a" }, { name: "b", data: [1, 2] }],
      /events\[1\]\.data must be a JSON object, got an array/,
    );
    rejects({ name: "a", data: "text" }, /event\.data must be a JSON object, got a string/);
  });

  it("rejects a bad id, ts, v or user", () => {
    rejects({ name: "a", id: 5 }, /event\.id must be a string, got a number/);
    rejects({ name: "a", id: "" }, /event\.id must not be empty/);
    rejects({ name: "a", id: "x".repeat(257) }, /event\.id is too long/);
    rejects({ name: "a", id: "a\nb" }, /event\.id must not contain control characters/);
    rejects({ name: "a", ts: "yesterday" }, /event\.ts must be a non-negative number/);
    rejects({ name: "a", ts: -5 }, /event\.ts must be a non-negative number/);
    rejects({ name: "a", v: 2 }, /event\.v must be a string/);
    rejects({ name: "a", user: ["u"] }, /event\.user must be a JSON object, got an array/);
  });

  it("rejects an event over 512 KiB with a TooLargeError naming its index and the limit", () => {
    const big = { name: "big", data: { blob: "x".repeat(MAX_EVENT_BYTES) } };
    rejects(
      [{ name: "small" }, big],
      /events\[1\] is \d+ bytes; the limit is 512 KiB \(524288 bytes\)/,
      TooLargeError,
    );
  });

  it("accepts an event just under 512 KiB", () => {
    const overhead = JSON.stringify({ name: "e", data: { b: "" }, id: "ID", ts: NOW }).length;
    const [ev] = prepareEvents(
      { name: "e", data: { b: "x".repeat(MAX_EVENT_BYTES - overhead) } },
      NOW,
      () => "ID",
    );
    expect(Buffer.byteLength(ev?.json ?? "")).toBe(MAX_EVENT_BYTES);
  });
});

describe("parseJsonBody", () => {
  it("parses JSON from a buffer", () => expect(parseJsonBody(Buffer.from('{"a":1}'))).toEqual({ a: 1 }));

  it("reports malformed JSON as invalid JSON with the parser's reason", () => {
    expect(() => parseJsonBody(Buffer.from('{"name": "x", '))).toThrow(/^invalid JSON: /);
  });

  it("reports an empty body", () => {
    expect(() => parseJsonBody(undefined)).toThrow(/invalid JSON: the request body is empty/);
    expect(() => parseJsonBody("  ")).toThrow(/empty/);
  });
});

describe("eventIdProblem", () => {
  it("accepts ULIDs and user idempotency keys, and refuses empty, long or control-character ids", () => {
    expect(eventIdProblem("01HZX3Q9V9X2J5W8N3K1T7C4RB")).toBeNull();
    expect(eventIdProblem("order/123:retry #2")).toBeNull();
    expect(eventIdProblem("")).toMatch(/empty/);
    expect(eventIdProblem("x".repeat(257))).toMatch(/too long/);
    expect(eventIdProblem("a\u0000")).toMatch(/control/);
  });
});

describe("buildRecords", () => {
  it("builds one EventRecord per event with the tenant, id, receive time, event JSON and name", () => {
    const events = prepareEvents(
      [
        { name: "a", id: "e1" },
        { name: "b", id: "e2" },
      ],
      NOW,
      ids,
    );
    const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const records = buildRecords({ accountId: "ACC", environmentId: "ENV" }, events, NOW, traceParent);
    const decoded = EventRecord.decode(encodeRecord(records[1] as EventRecord));
    expect(decoded).toEqual({
      accountId: "ACC",
      environmentId: "ENV",
      eventId: "e2",
      receivedAtMs: NOW,
      eventJson: events[1]?.json,
      traceParent,
      name: "b",
    });
  });
});
