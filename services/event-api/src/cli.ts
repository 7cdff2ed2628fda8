#!/usr/bin/env node
// The operator's CLI over TenantService gRPC (accounts, environments and event keys) and
// ExecutorService gRPC (cancelling runs).
// Exit codes: 0 done, 1 the call failed (the server answered an error or cannot be reached),
// 2 bad usage. Output is a small table, or JSON with --json.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { callUnary, createClient } from "@stepline/internal/grpc";
import type { Account, Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { loadCliConfig } from "./config.js";

export const USAGE = `usage: stepline [--addr host:port] [--executor host:port] [--json] <command>

commands:
  accounts create <name>            create an account
  accounts list                     list accounts
  envs create <accountId> <name>    create an environment (with one event key and one signing key)
  envs list <accountId>             list an account's environments and their keys
  envs get <envId>                  show one environment and its keys
  keys create <envId>               add an event key to an environment
  runs cancel <envId> <runId>       cancel a run
  runs cancel-function <envId> <functionId> [--from <time>] [--to <time>]
                                    cancel the running runs of a function started in [from, to)
                                    (times as ISO 8601 or epoch ms; default: all of them)

options:
  --addr host:port   event-api's gRPC address (default: $STEPLINE_EVENT_API_GRPC_ADDR or 127.0.0.1:50051)
  --executor host:port  the executor's gRPC address, for runs commands
                     (default: $STEPLINE_EXECUTOR_GRPC_ADDR or 127.0.0.1:50054)
  --json             print JSON instead of a table
  -h, --help         show this help
`;

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

class UsageError extends Error {}

interface Parsed {
  addr: string | null;
  executor: string | null;
  from: string | null;
  to: string | null;
  json: boolean;
  help: boolean;
  args: string[];
}

function parseArgs(argv: string[]): Parsed {
  const out: Parsed = {
    addr: null,
    executor: null,
    from: null,
    to: null,
    json: false,
    help: false,
    args: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const valued = (["--executor", "--from", "--to"] as const).find((o) => a === o || a.startsWith(`${o}=`));
    if (valued) {
      const v = a === valued ? argv[++i] : a.slice(valued.length + 1);
      if (!v) throw new UsageError(`${valued} needs a value`);
      out[valued.slice(2) as "executor" | "from" | "to"] = v;
      continue;
    }
    if (a === "--json") out.json = true;
    else if (a === "-h" || a === "--help" || a === "help") out.help = true;
    else if (a === "--addr") {
      const v = argv[++i];
      if (!v) throw new UsageError("--addr needs a value (host:port)");
      out.addr = v;
    } else if (a.startsWith("--addr=")) out.addr = a.slice("--addr=".length);
    else if (a.startsWith("-") && a.length > 1) throw new UsageError(`unknown option ${a}`);
    else out.args.push(a);
  }
  for (const [name, v] of [
    ["--addr", out.addr],
    ["--executor", out.executor],
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
  const executor = createClient(ExecutorServiceClient, executorAddr);
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
      default:
        throw new UsageError(`unknown command "${parsed.args.join(" ")}"`);
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`stepline: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    const e = err as Error;
    const where =
      parsed.args[0] === "runs" ? `the executor running at ${executorAddr}` : `event-api running at ${addr}`;
    const hint = e.name === "UnavailableError" ? ` (is ${where}?)` : "";
    io.stderr(`stepline: ${e.message}${hint}\n`);
    return 1;
  } finally {
    client.close();
    executor.close();
  }
}

/** The CLI's entry: parses process arguments, runs, and sets the exit code. */
export async function cliMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const io: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };
  let addr: string;
  let executorAddr: string;
  try {
    ({ addr, executorAddr } = loadCliConfig());
  } catch (err) {
    io.stderr(`stepline: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return 2;
  }
  const code = await runCli(argv, io, addr, executorAddr);
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
