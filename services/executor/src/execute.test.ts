// The item handler against SDK v4 (v3 has its own file: the two cannot share a process).
import { requiredEnv } from "@stepline/internal/testing";
import { describeExecuteAgainstSdk } from "./execute.suite.fixture.js";

const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");

describeExecuteAgainstSdk("v4", redisUrl);
