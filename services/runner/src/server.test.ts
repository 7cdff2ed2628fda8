import { ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv } from "@stepline/internal/testing";
import type { FunctionConfig } from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Registry } from "./registry.js";
import { runnerService } from "./server.js";

const REDIS_URL = requiredEnv("STEPLINE_TEST_REDIS_URL");

let redis: Redis;
let server: GrpcServer;
let client: RunnerServiceClient;
const env = `test-${newId()}`;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  server = await startGrpcServer("127.0.0.1:0", [
    runnerService(createLogger("runner-test", "silent"), new Registry(redis)),
  ]);
  client = createClient(RunnerServiceClient, `127.0.0.1:${server.port}`);
});

afterAll(async () => {
  client?.close();
  await server?.close();
  const keys = await redis.keys(`r:{${env}}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const fn = (over: Partial<FunctionConfig> = {}): FunctionConfig => ({
  id: "shop-checkout",
  name: "checkout",
  triggers: [
    { event: "shop/order.*", expression: "event.data.total > 0", cron: "" },
    { event: "", expression: "", cron: "0 5 * * *" },
  ],
  url: "http://127.0.0.1:3000/api/inngest?fnId=shop-checkout&stepId=step",
  retries: 3,
  rawJson: '{"id":"shop-checkout","concurrency":2}',
  ...over,
});

const syncApp = (functions: FunctionConfig[]) =>
  callUnary(client.syncApp.bind(client), {
    accountId: "acct1",
    environmentId: env,
    appId: "shop",
    url: "http://127.0.0.1:3000/api/inngest",
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions,
  });

describe("RunnerService over gRPC", () => {
  it("syncs an app and lists its functions with their config and version", async () => {
    expect(await syncApp([fn()])).toEqual({ modified: true });
    expect(await syncApp([fn()])).toEqual({ modified: false });
    const { functions } = await callUnary(client.listFunctions.bind(client), { environmentId: env });
    expect(functions).toHaveLength(1);
    expect(functions[0]?.appId).toBe("shop");
    expect(functions[0]?.version).toMatch(/^[0-9a-f]{16}$/);
    expect(functions[0]?.config).toEqual(fn({ rawJson: '{"concurrency":2,"id":"shop-checkout"}' }));
  });

  it("answers INVALID_ARGUMENT naming the function and field of an invalid config", async () => {
    const err = await syncApp([fn({ retries: 99 })]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toBe("function shop-checkout: retries must be an integer from 0 to 20");
  });

  it("answers INVALID_ARGUMENT for a malformed environment id in ListFunctions", async () => {
    const err = await callUnary(client.listFunctions.bind(client), { environmentId: "" }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
  });
});
