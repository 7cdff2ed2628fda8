// End-to-end durable step tools with the official SDK v4 (see support/durable-suite.ts).
import { durableSuite } from "./support/durable-suite.js";

durableSuite("v4");
