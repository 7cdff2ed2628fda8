// Test fixture: a real app serving functions with the official inngest SDK (v4 or v3) on loopback,
// in dev mode or, with a signing key, in production mode (the SDK then checks our signatures and
// signs its answers). Each step body counts how often it ran.

import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Inngest as Inngest4, NonRetriableError as NonRetriable4 } from "inngest";
import { serve as serve4 } from "inngest/node";
import { Inngest as Inngest3, NonRetriableError as NonRetriable3 } from "inngest-v3";
import { serve as serve3 } from "inngest-v3/node";

export type Sdk = "v4" | "v3";

export interface FixtureApp {
  sdk: Sdk;
  appId: string;
  /** The URL the sync would report for a function (`?fnId=<appId>-<fnId>&stepId=step`). */
  fnUrl(fnId: string): string;
  /** How often each counted step body ran. */
  counts: Map<string, number>;
  close(): Promise<void>;
}

type Handler = (ctx: { event: { data: Record<string, unknown> }; step: StepTools }) => Promise<unknown>;
interface StepTools {
  run<T>(id: string, fn: () => T | Promise<T>): Promise<T>;
  sleep(id: string, duration: string): Promise<void>;
}

/** Event names the fixture functions are triggered by. */
export const EVENTS = {
  three: "test/three",
  flaky: "test/flaky",
  doomed: "test/doomed",
  parallel: "test/parallel",
  sleeper: "test/sleeper",
  caught: "test/caught",
  slow: "test/slow",
} as const;

/** Starts an app with the fixture functions. */
export async function startFixtureApp(sdk: Sdk, opts: { signingKey?: string } = {}): Promise<FixtureApp> {
  const appId = `fixture-${sdk}-${Math.random().toString(36).slice(2, 8)}`;
  const counts = new Map<string, number>();
  const count = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  const NonRetriable = sdk === "v4" ? NonRetriable4 : NonRetriable3;
  const clientOpts = {
    id: appId,
    isDev: !opts.signingKey,
    signingKey: opts.signingKey,
    baseUrl: "http://127.0.0.1:9",
    eventKey: "unused",
    logger: { info() {}, warn() {}, error() {}, debug() {} },
  };
  const client: unknown =
    sdk === "v4" ? new Inngest4(clientOpts as never) : new Inngest3(clientOpts as never);
  const make = (id: string, event: string, handler: Handler): unknown => {
    const c = client as {
      createFunction(a: unknown, b: unknown, c?: unknown): unknown;
    };
    return sdk === "v4"
      ? c.createFunction({ id, triggers: [{ event }] }, handler)
      : c.createFunction({ id }, { event }, handler);
  };
  let flakyFailures = 0;
  const functions = [
    make("three", EVENTS.three, async ({ event, step }) => {
      const a = await step.run("a", () => {
        count("a");
        return Number(event.data.n) + 1;
      });
      const b = await step.run("b", () => {
        count("b");
        return a * 2;
      });
      const c = await step.run("c", () => {
        count("c");
        return `${b}!`;
      });
      return { a, b, c };
    }),
    make("flaky", EVENTS.flaky, async ({ step }) => {
      const first = await step.run("first", () => {
        count("first");
        return "ok";
      });
      const second = await step.run("second", () => {
        count("second");
        if (flakyFailures < 2) {
          flakyFailures++;
          throw new Error(`flaky failure ${flakyFailures}`);
        }
        return "recovered";
      });
      return [first, second];
    }),
    make("doomed", EVENTS.doomed, async ({ step }) => {
      await step.run("only", () => {
        count("doomed");
        throw new NonRetriable("this cannot work");
      });
      return "unreachable";
    }),
    make("caught", EVENTS.caught, async ({ step }) => {
      try {
        await step.run("always-fails", () => {
          count("always-fails");
          throw new Error("broken for good");
        });
      } catch (err) {
        return { caught: (err as Error).message };
      }
      return "unreachable";
    }),
    make("parallel", EVENTS.parallel, async ({ step }) => {
      const [p1, p2] = await Promise.all([
        step.run("p1", () => {
          count("p1");
          return 1;
        }),
        step.run("p2", () => {
          count("p2");
          return 2;
        }),
      ]);
      const sum = await step.run("sum", () => {
        count("sum");
        return p1 + p2;
      });
      return sum;
    }),
    make("slow", EVENTS.slow, async ({ event, step }) => {
      await step.run("wait", async () => {
        count("wait");
        await new Promise((r) => setTimeout(r, Number(event.data.ms ?? 300)));
        return "waited";
      });
      return "done";
    }),
    make("sleeper", EVENTS.sleeper, async ({ step }) => {
      await step.sleep("nap", "1h");
      return "woke";
    }),
  ];

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const serveOpts = {
    client,
    functions,
    signingKey: opts.signingKey,
    servePath: "/api/inngest",
    ...(sdk === "v4" ? { serveOrigin: origin } : { serveHost: origin }),
  };
  handler = (sdk === "v4" ? serve4 : serve3)(serveOpts as never) as typeof handler;
  return {
    sdk,
    appId,
    fnUrl: (fnId) => `${origin}/api/inngest?fnId=${appId}-${fnId}&stepId=step`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A fresh production-style signing key for tests. */
export function testSigningKey(): string {
  const hex = Array.from({ length: 32 }, () =>
    Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, "0"),
  );
  return `signkey-test-${hex.join("")}`;
}
