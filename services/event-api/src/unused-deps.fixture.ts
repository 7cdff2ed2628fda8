// Stand-ins for the services an HTTP test does not reach: every call fails, so a test that
// reaches one by mistake fails loudly instead of passing on a made-up answer.
import type { AppSyncer } from "./app-sync.js";
import type { AppRegistry, FunctionControl, HistoryReader, RunControl } from "./rest.js";

const unused = () => Promise.reject(new Error("not in this test"));

export const unusedRegistry: AppRegistry = {
  syncApp: unused,
  listApps: unused,
  listFunctions: unused,
  startRun: unused,
};
export const unusedHistory: HistoryReader = {
  getRun: unused,
  listEventRuns: unused,
  listEventSkips: unused,
  listRuns: unused,
  listRunSteps: unused,
  listEvents: unused,
  getEvent: unused,
  functionStats: unused,
  functionMetrics: unused,
};
export const unusedRuns: RunControl = { cancelRun: unused, checkpoint: unused };
export const unusedFunctions: FunctionControl = { pausedOf: unused, setPaused: unused };
export const unusedApps: AppSyncer = { sync: unused };
