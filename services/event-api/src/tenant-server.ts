// TenantService gRPC handlers: proto <-> tenancy store translation only. Keys pass through these
// handlers (callers need them) but are never logged.
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  Account as AccountMsg,
  Environment as EnvironmentMsg,
  TenantServiceServer,
} from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceService } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import type { Account, Environment, TenancyStore } from "./tenancy.js";

function accountMsg(a: Account): AccountMsg {
  return { id: a.id, name: a.name, createdAtMs: a.createdAtMs };
}

function environmentMsg(e: Environment): EnvironmentMsg {
  return {
    id: e.id,
    accountId: e.accountId,
    name: e.name,
    eventKeys: e.eventKeys,
    signingKey: e.signingKey,
    createdAtMs: e.createdAtMs,
  };
}

/** The TenantService definition and implementation, ready for startGrpcServer. */
export function tenantService(store: TenancyStore, log: Logger) {
  const l = log.child({ component: "tenant-service" });
  const implementation: TenantServiceServer = {
    createAccount: unary(l, async (req) => {
      const account = await store.createAccount(req.name);
      l.info({ accountId: account.id }, "account created");
      return { account: accountMsg(account) };
    }),
    listAccounts: unary(l, async () => ({ accounts: (await store.listAccounts()).map(accountMsg) })),
    createEnvironment: unary(l, async (req) => {
      const env = await store.createEnvironment(req.accountId, req.name);
      l.info({ accountId: env.accountId, environmentId: env.id }, "environment created");
      return { environment: environmentMsg(env) };
    }),
    listEnvironments: unary(l, async (req) => ({
      environments: (await store.listEnvironments(req.accountId)).map(environmentMsg),
    })),
    createEventKey: unary(l, async (req) => {
      const eventKey = await store.createEventKey(req.environmentId);
      l.info({ environmentId: req.environmentId }, "event key created");
      return { eventKey };
    }),
    getEnvironment: unary(l, async (req) => ({
      environment: environmentMsg(await store.getEnvironment(req.environmentId)),
    })),
  };
  return { definition: TenantServiceService, implementation };
}
