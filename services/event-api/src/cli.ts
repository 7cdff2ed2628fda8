#!/usr/bin/env node
// The operator's CLI over TenantService gRPC (accounts, environments and event keys), UserService
// gRPC (dashboard users; passwords are read from stdin, never from arguments),
// ExecutorService gRPC (cancelling runs) and QueueService gRPC (pausing functions, dead letters).
// Internal calls carry STEPLINE_INTERNAL_TOKEN (or the token `npm start` keeps in .stepline/).
// Exit codes: 0 done, 1 the call failed (the server answered an error or cannot be reached),
// 2 bad usage. Output is a small table, or JSON with --json.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs as parseOptions } from "node:util";
import { callUnary, createClient, useInternalToken } from "@stepline/internal/grpc";
import type { Account, Environment, User } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceClient, UserServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { DeadLetter } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind, QueueServiceClient, RedriveStatus } from "@stepline/proto/stepline/queue/v1/queue_service";
import { loadCliConfig } from "./config.js";
import type { PasswordInput } from "./password-input.js";
import { readPassword } from "./password-input.js";
import { checkPassword, validateUsername } from "./user-rules.js";

export const USAGE = `usage: stepline [--addr host:port] [--executor host:port] [--queue host:port] [--json] <command>

commands:
  accounts create <name>            create an account
  accounts list                     list accounts
  envs create <accountId> <name>    create an environment (with one event key and one signing key)
  envs list <accountId>             list an account's environments and their keys
  envs get <envId>                  show one environment and its keys
  keys create <envId>               add an event key to an environment
  users create <accountId> <username>
                                    create a dashboard user of an account; the password (at least
                                    12 characters) is read from stdin, or typed at a prompt
  users list [<accountId>]          list users (of one account)
  users delete <username>           delete a user and end their sessions
  runs cancel <envId> <runId>       cancel a run
  runs cancel-function <envId> <functionId> [--from <time>] [--to <time>]
                                    cancel the running runs of a function started in [from, to)
                                    (times as ISO 8601 or epoch ms; default: all of them)
  functions pause <envId> <functionId>   stop handing out the function's work (it stays queued)
  functions resume <envId> <functionId>  hand it out again, in order
  functions status <envId> <functionId>  say whether the function is paused
  dead-letters list [--account <accountId>] [--limit <n>]
                                    list queue items given up after too many deliveries that
                                    ended in a lost lease, oldest first (default limit 100)
  dead-letters redrive <accountId> <itemId>...
                                    put dead-lettered items back in line, due now

options:
  --addr host:port   event-api's control address, TenantService
                     (default: $STEPLINE_EVENT_API_CONTROL_ADDR or 127.0.0.1:50056)
  --executor host:port  the executor's gRPC address, for runs commands
                     (default: $STEPLINE_EXECUTOR_GRPC_ADDR or 127.0.0.1:50054)
  --queue host:port  a queue replica's gRPC address, for functions and dead-letters commands
                     (default: $STEPLINE_QUEUE_GRPC_ADDR or 127.0.0.1:50053)
  --json             print JSON instead of a table
  -h, --help         show this help
`;

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Where `users create` reads the password (default: process.stdin). */
  stdin?: PasswordInput;
}

class UsageError extends Error {}
/** Bad input whose message says it all (no usage after it). */
class InputError extends UsageError {}

interface Parsed {
  addr: string | null;
  executor: string | null;
  queue: string | null;
  from: string | null;
  to: string | null;
  account: string | null;
  limit: string | null;
  json: boolean;
  help: boolean;
  args: string[];
}

function parseArgs(argv: string[]): Parsed {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseOptions({
      args: argv,
      allowPositionals: true,
      options: {
        addr: { type: "string" },
        executor: { type: "string" },
        queue: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        account: { type: "string" },
        limit: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0] ?? "bad arguments");
  }
  const str = (v: string | boolean | undefined) => (typeof v === "string" ? v : null);
  const out: Parsed = {
    addr: str(values.addr),
    executor: str(values.executor),
    queue: str(values.queue),
    from: str(values.from),
    to: str(values.to),
    account: str(values.account),
    limit: str(values.limit),
    json: values.json === true,
    help: values.help === true || positionals[0] === "help",
    args: positionals[0] === "help" ? positionals.slice(1) : positionals,
  };
  for (const [name, v] of [
    ["--addr", out.addr],
    ["--executor", out.executor],
    ["--queue", out.queue],
  ] as const) {
    if (v !== null && !/^[^\s:]+:\d{1,5}$/.test(v))
      throw new UsageError(`${name} must be host:port, got "${v}"`);
  }
  return out;
}

function need(args: string[], count: number, usage: string): string[] {
  if (args.length !== count) throw new UsageError(`expected: ${usage}`);
  return args;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join("\n")}\n`;
}

const iso = (ms: number) => new Date(ms).toISOString();
const userRows = (us: User[]) =>
  us.length === 0
    ? "(no users)\n"
    : table(
        ["USERNAME", "ACCOUNT", "CREATED"],
        us.map((u) => [u.username, u.accountId, iso(u.createdAtMs)]),
      );

/** A check of user input that makes a bad value bad usage (exit 2) rather than a failed call. */
function checked(check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new InputError((err as Error).message);
  }
}
const accountRows = (as: Account[]) =>
  table(
    ["ID", "NAME", "CREATED"],
    as.map((a) => [a.id, a.name, iso(a.createdAtMs)]),
  );

function envText(envs: Environment[]): string {
  return envs
    .map((e) =>
      [
        `environment ${e.id}`,
        `  name:         ${e.name}`,
        `  account:      ${e.accountId}`,
        `  created:      ${iso(e.createdAtMs)}`,
        `  signing key:  ${e.signingKey}`,
        ...e.eventKeys.map((k, i) => `  ${i === 0 ? "event keys: " : "            "}  ${k}`),
      ].join("\n"),
    )
    .join("\n\n")
    .concat(envs.length > 0 ? "\n" : "(no environments)\n");
}

const KIND_NAMES: Partial<Record<ItemKind, string>> = {
  [ItemKind.ITEM_KIND_START]: "start",
  [ItemKind.ITEM_KIND_STEP]: "step",
  [ItemKind.ITEM_KIND_CRON]: "cron",
  [ItemKind.ITEM_KIND_DEBOUNCE]: "debounce",
  [ItemKind.ITEM_KIND_BATCH]: "batch",
  [ItemKind.ITEM_KIND_DEAD_LETTER]: "notice",
};

function deadLetterRows(items: DeadLetter[], more: boolean): string {
  if (items.length === 0) return "(no dead letters)\n";
  const rows = table(
    ["DEAD SINCE", "ACCOUNT", "ITEM", "KIND", "RUN", "FUNCTION", "DELIVERIES"],
    items.map((d) => [
      iso(d.deadLetteredAtMs),
      d.accountId,
      d.itemId,
      KIND_NAMES[d.kind] ?? String(d.kind),
      d.runId || "-",
      d.functionId,
      String(d.deliveries),
    ]),
  );
  return more ? `${rows}(more: raise --limit, or filter by --account)\n` : rows;
}

/** A time option as epoch ms: ISO 8601 or a number of ms. */
function timeOption(value: string | null, name: string, fallback: number): number {
  if (value === null) return fallback;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new UsageError(`${name} must be an ISO 8601 time or epoch ms, got "${value}"`);
  return ms;
}

/** Runs one CLI invocation and returns its exit code. */
export async function runCli(
  argv: string[],
  io: CliIo,
  defaultAddr: string,
  defaultExecutorAddr = "127.0.0.1:50054",
  defaultQueueAddr = "127.0.0.1:50053",
): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseArgs(argv);
  } catch (err) {
    io.stderr(`stepline: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help || parsed.args.length === 0) {
    (parsed.help ? io.stdout : io.stderr)(USAGE);
    return parsed.help ? 0 : 2;
  }
  const addr = parsed.addr ?? defaultAddr;
  const executorAddr = parsed.executor ?? defaultExecutorAddr;
  const client = createClient(TenantServiceClient, addr);
  const users = createClient(UserServiceClient, addr);
  const executor = createClient(ExecutorServiceClient, executorAddr);
  const queueAddr = parsed.queue ?? defaultQueueAddr;
  const queue = createClient(QueueServiceClient, queueAddr);
  /** A function of an environment, with the environment's account (from TenantService). */
  const functionRef = async (environmentId: string, functionId: string) => {
    const { environment } = await callUnary(client.getEnvironment.bind(client), { environmentId });
    if (!environment) throw new Error(`environment ${environmentId} not found`);
    return { accountId: environment.accountId, environmentId, functionId };
  };
  const print = (value: unknown, text: string) =>
    io.stdout(parsed.json ? `${JSON.stringify(value, null, 2)}\n` : text);
  try {
    const [noun, verb, ...rest] = parsed.args;
    const cmd = `${noun} ${verb ?? ""}`.trim();
    switch (cmd) {
      case "accounts create": {
        const [name] = need(rest, 1, "accounts create <name>");
        const { account } = await callUnary(client.createAccount.bind(client), { name: name as string });
        print(account, accountRows(account ? [account] : []));
        break;
      }
      case "accounts list": {
        need(rest, 0, "accounts list");
        const { accounts } = await callUnary(client.listAccounts.bind(client), {});
        print(accounts, accounts.length > 0 ? accountRows(accounts) : "(no accounts)\n");
        break;
      }
      case "envs create": {
        const [accountId, name] = need(rest, 2, "envs create <accountId> <name>");
        const { environment } = await callUnary(client.createEnvironment.bind(client), {
          accountId: accountId as string,
          name: name as string,
        });
        print(environment, envText(environment ? [environment] : []));
        break;
      }
      case "envs list": {
        const [accountId] = need(rest, 1, "envs list <accountId>");
        const { environments } = await callUnary(client.listEnvironments.bind(client), {
          accountId: accountId as string,
        });
        print(environments, envText(environments));
        break;
      }
      case "envs get": {
        const [environmentId] = need(rest, 1, "envs get <envId>");
        const { environment } = await callUnary(client.getEnvironment.bind(client), {
          environmentId: environmentId as string,
        });
        print(environment, envText(environment ? [environment] : []));
        break;
      }
      case "keys create": {
        const [environmentId] = need(rest, 1, "keys create <envId>");
        const { eventKey } = await callUnary(client.createEventKey.bind(client), {
          environmentId: environmentId as string,
        });
        print({ eventKey }, `${eventKey}\n`);
        break;
      }
      case "users create": {
        const [accountId, username] = need(rest, 2, "users create <accountId> <username>");
        checked(() => validateUsername(username as string));
        let password: string;
        try {
          password = await readPassword(io.stdin ?? process.stdin, io.stderr);
        } catch (err) {
          throw new InputError((err as Error).message);
        }
        checked(() => checkPassword(password));
        const { user } = await callUnary(users.createUser.bind(users), {
          accountId: accountId as string,
          username: username as string,
          password,
        });
        print(user, userRows(user ? [user] : []));
        break;
      }
      case "users list": {
        if (rest.length > 1) throw new UsageError("expected: users list [<accountId>]");
        const res = await callUnary(users.listUsers.bind(users), { accountId: rest[0] ?? "" });
        print(res.users, userRows(res.users));
        break;
      }
      case "users delete": {
        const [username] = need(rest, 1, "users delete <username>");
        const res = await callUnary(users.deleteUser.bind(users), { username: username as string });
        print(res, `user ${username} deleted (${res.sessionsEnded} sessions ended)\n`);
        break;
      }
      case "runs cancel": {
        const [environmentId, runId] = need(rest, 2, "runs cancel <envId> <runId>");
        const res = await callUnary(executor.cancelRun.bind(executor), {
          environmentId: environmentId as string,
          runId: runId as string,
        });
        print(
          res,
          res.cancelled ? `run ${runId} cancelled\n` : `run ${runId} already ended (${res.status})\n`,
        );
        break;
      }
      case "runs cancel-function": {
        const [environmentId, functionId] = need(rest, 2, "runs cancel-function <envId> <functionId>");
        const from = timeOption(parsed.from, "--from", 0);
        const to = timeOption(parsed.to, "--to", Date.now() + 1);
        const cancelled: string[] = [];
        for (let more = true; more; ) {
          const res = await callUnary(executor.cancelFunctionRuns.bind(executor), {
            environmentId: environmentId as string,
            functionId: functionId as string,
            startedAfterMs: from,
            startedBeforeMs: to,
            limit: 500,
          });
          cancelled.push(...res.cancelledRunIds);
          more = res.more;
        }
        print({ cancelled }, `${cancelled.length} runs of ${functionId} cancelled\n`);
        break;
      }
      case "functions pause":
      case "functions resume": {
        const [environmentId, functionId] = need(rest, 2, `${cmd} <envId> <functionId>`);
        const fn = await functionRef(environmentId as string, functionId as string);
        const res =
          verb === "pause"
            ? await callUnary(queue.pauseFunction.bind(queue), { function: fn })
            : await callUnary(queue.resumeFunction.bind(queue), { function: fn });
        const done = verb === "pause" ? "paused" : "resumed";
        const already = verb === "pause" ? "was paused already" : "was not paused";
        print(res, `${functionId} ${res.changed ? done : already}\n`);
        break;
      }
      case "functions status": {
        const [environmentId, functionId] = need(rest, 2, "functions status <envId> <functionId>");
        const fn = await functionRef(environmentId as string, functionId as string);
        const res = await callUnary(queue.getFunctionPauses.bind(queue), { functions: [fn] });
        const paused = res.functions[0]?.paused ?? false;
        print({ paused }, `${functionId} is ${paused ? "paused" : "running"}\n`);
        break;
      }
      case "dead-letters list": {
        need(rest, 0, "dead-letters list [--account <accountId>] [--limit <n>]");
        const limit = parsed.limit === null ? 100 : Number(parsed.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
          throw new UsageError(`--limit must be a whole number from 1 to 1000, got "${parsed.limit}"`);
        const res = await callUnary(queue.listDeadLetters.bind(queue), {
          accountId: parsed.account ?? "",
          limit,
        });
        print(res, deadLetterRows(res.items, res.more));
        break;
      }
      case "dead-letters redrive": {
        const [accountId, ...itemIds] = rest;
        if (!accountId || itemIds.length === 0)
          throw new UsageError("expected: dead-letters redrive <accountId> <itemId>...");
        const res = await callUnary(queue.redriveDeadLetters.bind(queue), {
          items: itemIds.map((itemId) => ({ itemId, accountId })),
        });
        const redriven = res.results.filter((r) => r.status === RedriveStatus.REDRIVE_STATUS_REDRIVEN);
        const missing = res.results.filter((r) => r.status !== RedriveStatus.REDRIVE_STATUS_REDRIVEN);
        print(
          res,
          `${redriven.length} of ${itemIds.length} items redriven\n${missing
            .map((r) => `not a dead letter of ${accountId}: ${r.itemId}\n`)
            .join("")}`,
        );
        if (missing.length > 0) return 1;
        break;
      }
      default:
        throw new UsageError(`unknown command "${parsed.args.join(" ")}"`);
    }
    return 0;
  } catch (err) {
    if (err instanceof InputError) {
      io.stderr(`stepline: ${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      io.stderr(`stepline: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    const e = err as Error;
    const where =
      parsed.args[0] === "runs"
        ? `the executor running at ${executorAddr}`
        : parsed.args[0] === "functions"
          ? `event-api running at ${addr}, and a queue replica at ${queueAddr}`
          : parsed.args[0] === "dead-letters"
            ? `a queue replica running at ${queueAddr}`
            : `event-api running at ${addr}`;
    const hint = e.name === "UnavailableError" ? ` (is ${where}?)` : "";
    io.stderr(`stepline: ${e.message}${hint}\n`);
    return 1;
  } finally {
    client.close();
    users.close();
    executor.close();
    queue.close();
  }
}

/** The CLI's entry: parses process arguments, runs, and sets the exit code. */
export async function cliMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const io: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };
  let config: ReturnType<typeof loadCliConfig>;
  try {
    config = loadCliConfig();
  } catch (err) {
    io.stderr(`stepline: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return 2;
  }
  useInternalToken(config.token);
  const code = await runCli(argv, io, config.addr, config.executorAddr, config.queueAddr);
  process.exitCode = code;
  return code;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) void cliMain();
