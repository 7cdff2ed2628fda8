import { render } from "preact";
import { App } from "./app";
import "./base.css";
import "./views.css";

// "/" has no page of its own: Apps is the start page, and the address bar should say so.
if (window.location.pathname === "/") window.history.replaceState(null, "", `/apps${window.location.search}`);

render(<App />, document.getElementById("app") as HTMLElement);
