// event-api: wiring only. Redis (tenancy), the Kafka producer (events), gRPC clients of runner
// (sync, registry reads), history (REST reads), executor (cancel, checkpoints) and queue (pause),
// the EventService gRPC server, TenantService and UserService on the control address, and the
// public HTTP API with the dashboard (and, in production mode, its sign-in).

import { systemClock } from "@stepline/internal/clock";
import { egressPolicy } from "@stepline/internal/egress";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { topicNames } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import { runService } from "@stepline/internal/lifecycle";
import { createRedis } from "@stepline/internal/redis";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { HistoryServiceClient } from "@stepline/proto/stepline/history/v1/history_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { appSyncer } from "./app-sync.js";
import { DEFAULT_DASHBOARD_DIR, loadEventApiConfig, trustProxyOf } from "./config.js";
import { eventService } from "./event-server.js";
import { buildHttpApp } from "./http.js";
import { EventProducer } from "./producer.js";
import { functionControlOverGrpc, historyOverGrpc, registryOverGrpc, runControlOverGrpc } from "./rest.js";
import { TenancyStore } from "./tenancy.js";
import { tenantService } from "./tenant-server.js";
import { userService } from "./user-server.js";
import { UserStore } from "./users.js";

runService(
  {
    name: "event-api",
    config: (env) => loadEventApiConfig(env),
    async start({ config, log, onStop, readyWhen }) {
      const redis = createRedis(config.STEPLINE_REDIS_URL, log);
      onStop(() => redis.disconnect());
      const tenancy = new TenancyStore(redis);
      const users = new UserStore(redis);
      const devTenant = config.STEPLINE_DEV ? await tenancy.ensureDevTenant() : null;
      if (devTenant) log.info({ accountId: devTenant.accountId, environmentId: devTenant.id }, "dev mode");

      const client = createProducer({
        brokers: config.STEPLINE_KAFKA_BROKERS,
        clientId: "stepline-event-api",
      });
      const producer = new EventProducer(client, {
        topic: topicNames(config.STEPLINE_KAFKA_TOPIC_PREFIX).events,
        timeoutMs: config.STEPLINE_EVENT_API_PRODUCE_TIMEOUT_MS,
        log: log.child({ component: "producer" }),
      });
      producer.start();
      onStop(() => producer.stop());

      const runner = createClient(RunnerServiceClient, config.STEPLINE_RUNNER_GRPC_ADDR);
      const history = createClient(HistoryServiceClient, config.STEPLINE_HISTORY_GRPC_ADDR);
      const executor = createClient(ExecutorServiceClient, config.STEPLINE_EXECUTOR_GRPC_ADDR);
      const queue = createClient(QueueServiceClient, config.STEPLINE_QUEUE_GRPC_ADDR);
      onStop(() => {
        runner.close();
        history.close();
        executor.close();
        queue.close();
      });
      const rpcTimeout = config.STEPLINE_EVENT_API_RPC_TIMEOUT_MS;
      const runs = runControlOverGrpc(executor, rpcTimeout, log.child({ component: "checkpoints" }));
      // Before the clients close (stops run newest first): checkpoints in flight get their answers.
      onStop(() => runs.close());

      // TenantService can list every key: it gets a listener of its own (the control address), which
      // a deployment exposes to operators and the executor only, apart from the data plane.
      const grpc = await startGrpcServer(config.STEPLINE_EVENT_API_GRPC_ADDR, [
        eventService(producer, systemClock, newId, log),
      ]);
      onStop(() => grpc.close());
      const control = await startGrpcServer(config.STEPLINE_EVENT_API_CONTROL_ADDR, [
        tenantService(tenancy, log),
        userService(users, log),
      ]);
      onStop(() => control.close());
      const http = buildHttpApp({
        log,
        tenants: tenancy,
        devTenant: devTenant ? { accountId: devTenant.accountId, environmentId: devTenant.id } : null,
        loopbackOnly: /^(127\.|localhost$|::1$)/.test(config.STEPLINE_EVENT_API_HTTP_HOST),
        trustProxy: trustProxyOf(config.STEPLINE_EVENT_API_TRUST_PROXY),
        sink: producer,
        registry: registryOverGrpc(runner, rpcTimeout),
        history: historyOverGrpc(history, rpcTimeout),
        runs,
        functions: functionControlOverGrpc(queue, rpcTimeout),
        apps: appSyncer({
          egress: egressPolicy({
            dev: config.STEPLINE_DEV,
            allow: config.STEPLINE_EVENT_API_EGRESS_ALLOW,
            who: "event-api",
            allowVariable: "STEPLINE_EVENT_API_EGRESS_ALLOW",
          }),
          timeoutMs: rpcTimeout,
        }),
        dashboardDir: config.STEPLINE_EVENT_API_DASHBOARD_DIR || DEFAULT_DASHBOARD_DIR,
        historyRetentionDays: config.STEPLINE_HISTORY_RETENTION_DAYS,
        // Dev mode needs no sign-in.
        sessions: devTenant ? null : users,
      });
      await http.listen({ port: config.STEPLINE_HTTP_PORT, host: config.STEPLINE_EVENT_API_HTTP_HOST });
      // Stopped first: it stops taking requests, and in-flight ones finish (their Kafka sends too).
      onStop(() => http.close());
      readyWhen(async () => producer.connected() && (await redis.ping()) === "PONG");
      return { httpPort: config.STEPLINE_HTTP_PORT, grpcPort: grpc.port, controlPort: control.port };
    },
  },
  process.env,
);
