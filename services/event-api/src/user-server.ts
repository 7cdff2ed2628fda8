// UserService gRPC handlers (dashboard users), served beside TenantService on the control address.
// Passwords arrive here in clear and go straight to the store's hashing: never logged.
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type { User as UserMsg, UserServiceServer } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { UserServiceService } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import type { User, UserStore } from "./users.js";

function userMsg(u: User): UserMsg {
  return { username: u.username, accountId: u.accountId, createdAtMs: u.createdAtMs };
}

/** The UserService definition and implementation, ready for startGrpcServer. */
export function userService(store: UserStore, log: Logger) {
  const l = log.child({ component: "user-service" });
  const implementation: UserServiceServer = {
    createUser: unary(l, async (req) => {
      const user = await store.createUser(req.accountId, req.username, req.password);
      l.info({ accountId: user.accountId, user: user.username }, "user created");
      return { user: userMsg(user) };
    }),
    listUsers: unary(l, async (req) => ({ users: (await store.listUsers(req.accountId)).map(userMsg) })),
    deleteUser: unary(l, async (req) => {
      const sessionsEnded = await store.deleteUser(req.username);
      l.info({ user: req.username, sessionsEnded }, "user deleted");
      return { sessionsEnded };
    }),
  };
  return { definition: UserServiceService, implementation };
}
