#!/usr/bin/env node
// The operator's CLI over TenantService gRPC: accounts, environments and event keys.
// Exit codes: 0 done, 1 the call failed (the server answered an error or cannot be reached),
// 2 bad usage. Output is a small table, or JSON with --json.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { callUnary, createClient } from "@stepline/internal/grpc";
import type { Account, Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { loadCliConfig } from "./config.js";

export const USAGE = `usage: stepline [--addr host:port] [--json] <command>

commands:
  accounts create <name>            create an account
  accounts list                     list accounts
  envs create <accountId> <name>    create an environment (with one event key and one signing key)
  envs list <accountId>             list an account's environments and their keys
  envs get <envId>                  show one environment and its keys
  keys create <envId>               add an event key to an environment

options:
  --addr host:port   event-api's gRPC address (default: $STEPLINE_EVENT_API_GRPC_ADDR or 127.0.0.1:50051)
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
  json: boolean;
  help: boolean;
  args: string[];
}

function parseArgs(argv: string[]): Parsed {
  const out: Parsed = { addr: null, json: false, help: false, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
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
  if (out.addr !== null && !/^[^\s:]+:\d{1,5}$/.test(out.addr)) {
    throw new UsageError(`--addr must be host:port, got "${out.addr}"`);
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

/** Runs one CLI invocation and returns its exit code. */
export async function runCli(argv: string[], io: CliIo, defaultAddr: string): Promise<number> {
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
  const client = createClient(TenantServiceClient, addr);
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
    const hint = e.name === "UnavailableError" ? ` (is event-api running at ${addr}?)` : "";
    io.stderr(`stepline: ${e.message}${hint}\n`);
    return 1;
  } finally {
    client.close();
  }
}

/** The CLI's entry: parses process arguments, runs, and sets the exit code. */
export async function cliMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const io: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };
  let addr: string;
  try {
    addr = loadCliConfig().addr;
  } catch (err) {
    io.stderr(`stepline: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return 2;
  }
  const code = await runCli(argv, io, addr);
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
