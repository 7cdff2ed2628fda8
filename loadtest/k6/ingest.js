// @ts-check
// Ingest: each virtual user POSTs one event per request to /e/<key> as fast as it is answered.
// Stepline answers 200 only once Kafka acknowledged the event, so this is durable ingest.
//   k6 run -e STEPLINE_URL=http://127.0.0.1:8288 -e EVENT_KEY=<key> --vus 64 --duration 30s loadtest/k6/ingest.js
import { check } from "k6";
import http from "k6/http";

const BASE = __ENV.STEPLINE_URL || "http://127.0.0.1:8288";
const KEY = __ENV.EVENT_KEY || "dev-key";

/** @type {import("k6/options").Options} */
export const options = {
  thresholds: {
    http_req_failed: ["rate<0.001"],
    http_req_duration: ["p(99)<100"],
  },
};

export default function () {
  const res = http.post(
    `${BASE}/e/${KEY}`,
    JSON.stringify({ name: "loadtest/ingest", data: { vu: __VU, iter: __ITER } }),
    { headers: { "content-type": "application/json" } },
  );
  check(res, { 200: (r) => r.status === 200 });
}
