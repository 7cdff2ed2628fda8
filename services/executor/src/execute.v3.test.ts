// The item handler against SDK v3 (its own file: v3 and v4 cannot share a process).
import { describeExecuteAgainstSdk } from "./execute.suite.fixture.js";

const redisUrl = process.env.STEPLINE_TEST_REDIS_URL;
if (!redisUrl) throw new Error("STEPLINE_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:26379)");

describeExecuteAgainstSdk("v3", redisUrl);
