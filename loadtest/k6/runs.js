// @ts-check
// Event -> run completed: each virtual user sends one event to a function it expects to complete
// (FUNCTION_EVENT, e.g. the 3-step function of loadtest/apps/sdk-app.mjs) and polls the REST API
// until the event's run ended, then records the time from send to end. (k6 has no callback, so it
// polls every 50 ms; `npm run bench` measures the same without polling.)
//   k6 run -e STEPLINE_URL=http://127.0.0.1:8288 -e EVENT_KEY=<key> -e SIGNING_KEY=<key> \
//     -e FUNCTION_EVENT=bench/sdk --vus 16 --duration 30s loadtest/k6/runs.js
import { check, fail, sleep } from "k6";
import http from "k6/http";
import { Trend } from "k6/metrics";

const BASE = __ENV.STEPLINE_URL || "http://127.0.0.1:8288";
const KEY = __ENV.EVENT_KEY || "dev-key";
const EVENT = __ENV.FUNCTION_EVENT || "bench/sdk";
/** @type {Record<string, string>} */
const AUTH = __ENV.SIGNING_KEY ? { authorization: `Bearer ${__ENV.SIGNING_KEY}` } : {};
const runDuration = new Trend("run_duration", true);

/** @type {import("k6/options").Options} */
export const options = {
  thresholds: { checks: ["rate>0.999"] },
};

export default function () {
  const sent = Date.now();
  const res = http.post(`${BASE}/e/${KEY}`, JSON.stringify({ name: EVENT, data: { vu: __VU } }), {
    headers: { "content-type": "application/json" },
  });
  if (!check(res, { "event accepted": (r) => r.status === 200 })) return;
  const body = /** @type {{ ids: string[] }} */ (res.json());
  const id = body.ids[0];
  if (!id) fail("no event id");
  for (let i = 0; i < 1200; i++) {
    const runs = http.get(`${BASE}/v1/events/${id}/runs`, { headers: AUTH, tags: { name: "runs" } });
    const data = /** @type {{ data: Array<{ status: string }> }} */ (runs.json()).data;
    if (data.length > 0 && data.every((r) => r.status !== "Running")) {
      runDuration.add(Date.now() - sent);
      check(data, { completed: (d) => d.every((r) => r.status === "Completed") });
      return;
    }
    sleep(0.05);
  }
  fail(`run of event ${id} did not end within a minute`);
}
