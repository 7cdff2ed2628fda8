// An ordinary app serving functions with the official inngest SDK, pointed at Stepline.
//   INNGEST_DEV=1 INNGEST_BASE_URL=http://127.0.0.1:8288 node examples/sdk-app/app.mjs
//   curl -X PUT http://127.0.0.1:3939/api/inngest          # sync the app to Stepline
//   curl -X POST http://127.0.0.1:8288/e/any-key -d '{"name":"demo/order.placed","data":{"qty":2}}'
// Production mode: set INNGEST_SIGNING_KEY and INNGEST_EVENT_KEY from `npm run stepline -- envs list <accountId>`
// and leave INNGEST_DEV unset.
import { createServer } from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const port = Number(process.env.PORT ?? 3939);
const inngest = new Inngest({
  id: "demo-app",
  baseUrl: process.env.INNGEST_BASE_URL ?? "http://127.0.0.1:8288",
});

const placeOrder = inngest.createFunction(
  { id: "place-order", triggers: [{ event: "demo/order.placed" }] },
  async ({ event, step }) => {
    const price = await step.run("price", () => event.data.qty * 10);
    const receipt = await step.run("receipt", () => `charged ${price}`);
    return { price, receipt };
  },
);

createServer(
  serve({ client: inngest, functions: [placeOrder], serveOrigin: `http://127.0.0.1:${port}` }),
).listen(port, "127.0.0.1", () => console.log(`demo app serving on http://127.0.0.1:${port}/api/inngest`));
