// TenantService over real gRPC (port 0) and real Redis, and the CLI that drives it.

import type { CallOptions, ServiceError } from "@grpc/grpc-js";
import { Metadata, status } from "@grpc/grpc-js";
import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import { TenancyStore } from "./tenancy.js";
import { tenantService } from "./tenant-server.js";

const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");
const keyPrefix = `test-tenant-srv-${uniqueTag()}:{t}:`;
const log = createLogger("event-api-test", "silent");

let redis: Redis;
let server: GrpcServer;
let addr: string;
let client: TenantServiceClient;

/** Calls a method raw, to see the gRPC status code itself. */
// Typed on the generated clients' last overload (request, metadata, options, callback), the one
// TypeScript infers from, so each call's response type is known.
function call<Req, Res>(
  method: (
    req: Req,
    metadata: Metadata,
    options: Partial<CallOptions>,
    cb: (err: ServiceError | null, res: Res) => void,
  ) => unknown,
  req: Req,
) {
  return new Promise<{ code: number; details?: string; res?: Res }>((resolve) =>
    method.call(client, req, new Metadata(), {}, (err, res) =>
      resolve(err ? { code: err.code, details: err.details } : { code: 0, res }),
    ),
  );
}

async function cli(...argv: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s) }, addr);
  return { code, out, err };
}

beforeAll(async () => {
  redis = new Redis(redisUrl);
  server = await startGrpcServer("127.0.0.1:0", [
    tenantService(new TenancyStore(redis, { prefix: keyPrefix }), log),
  ]);
  addr = `127.0.0.1:${server.port}`;
  client = createClient(TenantServiceClient, addr);
});

afterAll(async () => {
  client?.close();
  await server?.close(100);
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("TenantService", () => {
  it("creates an account and an environment whose keys GetEnvironment returns", async () => {
    const acct = await call(client.createAccount, { name: "acme" });
    expect(acct.code).toBe(0);
    const accountId = acct.res?.account?.id ?? "";
    const created = await call(client.createEnvironment, { accountId, name: "production" });
    expect(created.code).toBe(0);
    const env = created.res?.environment;
    expect(env?.eventKeys).toHaveLength(1);
    expect(env?.signingKey).toMatch(/^signkey-production-/);
    const got = await call(client.getEnvironment, { environmentId: env?.id ?? "" });
    expect(got.res?.environment).toEqual(env);
    const key = await call(client.createEventKey, { environmentId: env?.id ?? "" });
    expect(key.res?.eventKey).toMatch(/^[0-9a-f]{64}$/);
    const listed = await call(client.listEnvironments, { accountId });
    expect(listed.res?.environments[0]?.eventKeys).toEqual([env?.eventKeys[0], key.res?.eventKey]);
    const accounts = await call(client.listAccounts, {});
    expect(accounts.res?.accounts.map((a) => a.id)).toContain(accountId);
  });

  it("answers INVALID_ARGUMENT, NOT_FOUND and ALREADY_EXISTS with a message naming the problem", async () => {
    expect(await call(client.createAccount, { name: "" })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "name is required",
    });
    const missing = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    expect(await call(client.createEnvironment, { accountId: missing, name: "prod" })).toEqual({
      code: status.NOT_FOUND,
      details: `account ${missing} not found`,
    });
    expect((await call(client.getEnvironment, { environmentId: missing })).code).toBe(status.NOT_FOUND);
    expect((await call(client.createEventKey, { environmentId: "bad id" })).code).toBe(
      status.INVALID_ARGUMENT,
    );
    expect((await call(client.listEnvironments, { accountId: missing })).code).toBe(status.NOT_FOUND);
    const accountId = (await call(client.createAccount, { name: "dup" })).res?.account?.id ?? "";
    await call(client.createEnvironment, { accountId, name: "staging" });
    const again = await call(client.createEnvironment, { accountId, name: "staging" });
    expect(again.code).toBe(status.ALREADY_EXISTS);
    expect(again.details).toMatch(/"staging" already exists/);
  });
});

describe("the stepline CLI", () => {
  it("creates and lists accounts, environments and keys, as tables or JSON", async () => {
    const created = await cli("--json", "accounts", "create", "Initech");
    expect(created.code).toBe(0);
    const account = JSON.parse(created.out) as { id: string; name: string };
    expect(account.name).toBe("Initech");

    const list = await cli("accounts", "list");
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^ID\s+NAME\s+CREATED\n/);
    expect(list.out).toContain(account.id);

    const env = await cli("envs", "create", account.id, "production", "--json");
    expect(env.code).toBe(0);
    const environment = JSON.parse(env.out) as { id: string; signingKey: string; eventKeys: string[] };
    expect(environment.signingKey).toMatch(/^signkey-production-/);

    const key = await cli("keys", "create", environment.id);
    expect(key.code).toBe(0);
    expect(key.out.trim()).toMatch(/^[0-9a-f]{64}$/);

    const envs = await cli("envs", "list", account.id);
    expect(envs.code).toBe(0);
    expect(envs.out).toContain(`environment ${environment.id}`);
    expect(envs.out).toContain(environment.signingKey);
    expect(envs.out).toContain(key.out.trim());

    const one = await cli("--addr", addr, "envs", "get", environment.id, "--json");
    expect(JSON.parse(one.out).eventKeys).toHaveLength(2);
  });

  it("exits 2 with the usage on bad usage, and 0 with it on --help", async () => {
    for (const argv of [
      [],
      ["accounts"],
      ["accounts", "create"],
      ["frobnicate", "x"],
      ["--bogus"],
      ["--addr", "nope"],
      ["dead-letters", "list", "--limit", "0"],
      ["dead-letters", "list", "--limit", "many"],
      ["dead-letters", "redrive", "acct-1"],
    ]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.err, argv.join(" ")).toContain("usage: stepline");
    }
    const help = await cli("--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("envs create <accountId> <name>");
  });

  it("exits 1 with the server's message when a call fails", async () => {
    const r = await cli("envs", "list", "01HZZZZZZZZZZZZZZZZZZZZZZZ");
    expect(r).toMatchObject({ code: 1, out: "" });
    expect(r.err).toBe("stepline: account 01HZZZZZZZZZZZZZZZZZZZZZZZ not found\n");
  });

  it("exits 1 with a hint when event-api cannot be reached", async () => {
    const r = await cli("--addr", "127.0.0.1:1", "accounts", "list");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/is event-api running at 127\.0\.0\.1:1\?/);
    const dead = await cli("--queue", "127.0.0.1:1", "dead-letters", "list");
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(/is a queue replica running at 127\.0\.0\.1:1\?/);
  });
});
