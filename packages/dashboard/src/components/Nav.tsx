import { useId } from "preact/hooks";
import type { Environment } from "../api";
import { Link } from "../router";

const SECTIONS = [
  { href: "/apps", label: "Apps", testid: "nav-apps" },
  { href: "/functions", label: "Functions", testid: "nav-functions" },
  { href: "/events", label: "Events", testid: "nav-events" },
  { href: "/runs", label: "Runs", testid: "nav-runs" },
  { href: "/send", label: "Send event", testid: "nav-send" },
];

interface Props {
  path: string;
  environments: Environment[];
  environmentId: string | null;
  onEnvironment: (id: string) => void;
  user: string | null;
  onSignOut: (() => void) | null;
  retentionDays: number | null;
  mode: string;
}

/** Left navigation; on a narrow window the stylesheet lays it out as a top bar. */
export function Nav(props: Props) {
  const envSelectId = useId();
  return (
    <nav class="nav" aria-label="Main">
      <div class="nav-brand">
        <Link href="/apps" class="brand">
          Stepline
        </Link>
        {props.mode === "dev" && <span class="mode-tag">dev</span>}
      </div>
      {props.environments.length > 1 && (
        <div class="nav-env">
          <label for={envSelectId}>Environment</label>
          <select
            id={envSelectId}
            data-testid="env-picker"
            value={props.environmentId ?? ""}
            onChange={(e) => props.onEnvironment(e.currentTarget.value)}
          >
            {props.environments.map((env) => (
              <option key={env.id} value={env.id}>
                {env.name}
              </option>
            ))}
          </select>
        </div>
      )}
      <ul class="nav-links">
        {SECTIONS.map((s) => {
          const active = props.path === s.href || props.path.startsWith(`${s.href}/`);
          return (
            <li key={s.href}>
              <Link href={s.href} testid={s.testid} class={active ? "active" : undefined} current={active}>
                {s.label}
              </Link>
            </li>
          );
        })}
      </ul>
      <div class="nav-footer">
        {props.retentionDays !== null && (
          <p data-testid="retention">History keeps runs for {props.retentionDays} days</p>
        )}
        {props.user && (
          <p class="nav-user">
            Signed in as <strong data-testid="current-user">{props.user}</strong>
          </p>
        )}
        {props.onSignOut && (
          <button type="button" class="link-button" data-testid="signout" onClick={props.onSignOut}>
            Sign out
          </button>
        )}
      </div>
    </nav>
  );
}
