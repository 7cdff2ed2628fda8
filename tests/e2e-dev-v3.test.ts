// End-to-end in dev mode with the official SDK v3 (see support/dev-suite.ts).
import { devModeSuite } from "./support/dev-suite.js";

devModeSuite("v3");
