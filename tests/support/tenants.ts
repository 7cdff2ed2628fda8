// Creates tenants through event-api's TenantService, as an operator's tooling would.
import { callUnary, createClient } from "@stepline/internal/grpc";
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceClient, UserServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";

export async function createTenant(addr: string, accountName: string, envName: string): Promise<Environment> {
  const client = createClient(TenantServiceClient, addr);
  try {
    const { account } = await callUnary(client.createAccount.bind(client), { name: accountName });
    if (!account) throw new Error("CreateAccount returned no account");
    const { environment } = await callUnary(client.createEnvironment.bind(client), {
      accountId: account.id,
      name: envName,
    });
    if (!environment) throw new Error("CreateEnvironment returned no environment");
    return environment;
  } finally {
    client.close();
  }
}

/** Another environment of an account. */
export async function createEnvironment(addr: string, accountId: string, name: string): Promise<Environment> {
  const client = createClient(TenantServiceClient, addr);
  try {
    const { environment } = await callUnary(client.createEnvironment.bind(client), { accountId, name });
    if (!environment) throw new Error("CreateEnvironment returned no environment");
    return environment;
  } finally {
    client.close();
  }
}

/** A dashboard user of an account (production mode's sign-in). */
export async function createUser(
  addr: string,
  accountId: string,
  username: string,
  password: string,
): Promise<void> {
  const client = createClient(UserServiceClient, addr);
  try {
    await callUnary(client.createUser.bind(client), { accountId, username, password });
  } finally {
    client.close();
  }
}
