// The CLI's `users` commands over real gRPC (port 0) and real Redis: the password comes from
// stdin (never an argument), a short one is refused as bad usage, and list shows the user.
import { Readable } from "node:stream";
import type { GrpcServer } from "@stepline/internal/grpc";
import { startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import { TenancyStore } from "./tenancy.js";
import { tenantService } from "./tenant-server.js";
import { userService } from "./user-server.js";
import { UserStore } from "./users.js";

const prefix = `test-users-cli-${uniqueTag()}:{t}:`;
const log = createLogger("event-api-test", "silent");

let redis: Redis;
let server: GrpcServer;
let addr: string;
let users: UserStore;
let accountId: string;

/** Runs the CLI with `stdin` piped in. */
async function cli(stdin: string, ...argv: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(
    argv,
    { stdout: (s) => (out += s), stderr: (s) => (err += s), stdin: Readable.from([stdin]) },
    addr,
  );
  return { code, out, err };
}

beforeAll(async () => {
  redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const tenancy = new TenancyStore(redis, { prefix });
  users = new UserStore(redis, { prefix });
  accountId = (await tenancy.createAccount("acme")).id;
  server = await startGrpcServer("127.0.0.1:0", [tenantService(tenancy, log), userService(users, log)]);
  addr = `127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close(100);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});

describe("stepline users", () => {
  it("creates a user with the password from stdin, lists it, and deletes it", async () => {
    const created = await cli(
      "a password from stdin\nignored second line\n",
      "users",
      "create",
      accountId,
      "ops@acme",
    );
    expect(created).toMatchObject({ code: 0, err: "" });
    expect(created.out).toMatch(new RegExp(`^USERNAME +ACCOUNT +CREATED\nops@acme +${accountId} `));
    expect(created.out).not.toContain("password");
    expect((await users.signIn("ops@acme", "a password from stdin", "127.0.0.1")).kind).toBe("ok");

    const listed = await cli("", "users", "list", accountId);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain("ops@acme");
    expect((await cli("", "--json", "users", "list")).out).toContain('"username": "ops@acme"');

    const again = await cli("another long password\n", "users", "create", accountId, "OPS@acme");
    expect(again).toMatchObject({ code: 1, err: 'stepline: user "OPS@acme" already exists\n' });

    const deleted = await cli("", "users", "delete", "ops@acme");
    expect(deleted).toMatchObject({ code: 0, out: "user ops@acme deleted (1 sessions ended)\n" });
    expect((await cli("", "users", "list", accountId)).out).toBe("(no users)\n");
    expect((await cli("", "users", "delete", "ops@acme")).code).toBe(1);
  });

  it("refuses a short or missing password with exit 2 and a message, creating nothing", async () => {
    const short = await cli("short pw\n", "users", "create", accountId, "eve");
    expect(short).toEqual({
      code: 2,
      out: "",
      err: "stepline: the password is too short (8 characters; at least 12)\n",
    });
    const none = await cli("", "users", "create", accountId, "eve");
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/^stepline: no password on stdin/);
    const badName = await cli("a password from stdin\n", "users", "create", accountId, "eve adams");
    expect(badName.code).toBe(2);
    expect(badName.err).toMatch(/username must be 1 to 64 characters/);
    expect(await users.listUsers(accountId)).toEqual([]);
  });
});
