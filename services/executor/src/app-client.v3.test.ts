// The app-client suite against SDK v3 (its own file: v3 and v4 cannot share a process).
import { describeAgainstSdk } from "./app-client.suite.fixture.js";

describeAgainstSdk("v3");
