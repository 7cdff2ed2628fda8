import { startMinimalApp } from "./apps/minimal-app.mjs";

let done;
const app = await startMinimalApp({
  appId: "probe-min",
  steps: 3,
  onDone: () => setTimeout(() => done(), 500),
});
const reg = await fetch("http://127.0.0.1:8288/fn/register", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(app.registration),
});
console.log("sync", reg.status);
await new Promise((r) => setTimeout(r, 1500));
console.log("GO");
const p = new Promise((r) => (done = r));
await fetch("http://127.0.0.1:8288/e/k", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ name: "probe-min/run", data: { k: "x" } }),
});
await p;
console.log("END");
await app.close();
process.exit(0);
