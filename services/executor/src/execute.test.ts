// The item handler against SDK v4 (v3 has its own file: the two cannot share a process).
import { describeExecuteAgainstSdk } from "./execute.suite.fixture.js";

const redisUrl = process.env.STEPLINE_TEST_REDIS_URL;
if (!redisUrl) throw new Error("STEPLINE_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:26379)");

describeExecuteAgainstSdk("v4", redisUrl);
