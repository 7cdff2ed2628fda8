// The item handler against SDK v3 (its own file: v3 and v4 cannot share a process).
import { requiredEnv } from "@stepline/internal/testing";
import { describeExecuteAgainstSdk } from "./execute.suite.fixture.js";

const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");

describeExecuteAgainstSdk("v3", redisUrl);
