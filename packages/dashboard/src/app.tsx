// The shell: loads settings, gates on sign-in in production mode, picks the environment, and routes.
import { Fragment, type JSX } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import {
  ApiError,
  api,
  type Environment,
  errorText,
  type Settings,
  setCsrfToken,
  setEnvironment,
  setUnauthorizedHandler,
} from "./api";
import { ErrorBanner } from "./components/ErrorBanner";
import { Nav } from "./components/Nav";
import { AppsPage } from "./pages/AppsPage";
import { EventPage } from "./pages/EventPage";
import { EventsPage } from "./pages/EventsPage";
import { FunctionsPage } from "./pages/FunctionsPage";
import { MetricsPage } from "./pages/MetricsPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { RunPage } from "./pages/RunPage";
import { RunsPage } from "./pages/RunsPage";
import { SendEventPage } from "./pages/SendEventPage";
import { SignInPage } from "./pages/SignInPage";
import { type Location, matchRoute, useLocation } from "./router";

const ENV_KEY = "stepline.environment";

type Auth = { state: "checking" } | { state: "signed-out" } | { state: "signed-in"; user: string | null };

type Params = Record<string, string>;
const ROUTES: [string, (params: Params, loc: Location) => JSX.Element][] = [
  ["/", () => <AppsPage />],
  ["/apps", () => <AppsPage />],
  ["/functions", () => <FunctionsPage />],
  ["/functions/:id/metrics", (p) => <MetricsPage functionId={p.id as string} />],
  ["/events", (_, loc) => <EventsPage query={loc.query} />],
  ["/events/:id", (p) => <EventPage eventId={p.id as string} />],
  ["/runs", (_, loc) => <RunsPage query={loc.query} />],
  ["/runs/:id", (p) => <RunPage runId={p.id as string} />],
  ["/send", () => <SendEventPage />],
];

function routePage(loc: Location): JSX.Element {
  for (const [pattern, render] of ROUTES) {
    const params = matchRoute(pattern, loc.path);
    // Keyed on the path so moving between two runs (say, after Replay) starts the page afresh.
    if (params) return <Fragment key={loc.path}>{render(params, loc)}</Fragment>;
  }
  return <NotFoundPage />;
}

function readStoredEnvironment(): string | null {
  try {
    return window.localStorage.getItem(ENV_KEY);
  } catch {
    return null;
  }
}

export function App() {
  const loc = useLocation();
  const [settings, setSettings] = useState<Settings | null>(null);
  const [settingsError, setSettingsError] = useState<string | null>(null);
  const [auth, setAuth] = useState<Auth>({ state: "checking" });
  const [environments, setEnvironments] = useState<Environment[]>([]);
  const [envId, setEnvId] = useState<string | null>(null);
  const [envError, setEnvError] = useState<string | null>(null);
  const [signOutError, setSignOutError] = useState<string | null>(null);

  const loadSettings = useCallback(async () => {
    setSettingsError(null);
    try {
      const s = (await api.settings()).data;
      setSettings(s);
      if (s.mode !== "production") {
        setAuth({ state: "signed-in", user: null });
        return;
      }
      // settings already says whether the cookie is valid; skipping the doomed GET /v1/session avoids
      // a 401 (which the browser logs as a console error) on every visit to the sign-in form.
      if (!s.signed_in_as) {
        setAuth({ state: "signed-out" });
        return;
      }
      const session = (await api.session()).data;
      setCsrfToken(session.csrf_token);
      setAuth({ state: "signed-in", user: session.user });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setAuth({ state: "signed-out" });
      else setSettingsError(errorText(err));
    }
  }, []);

  useEffect(() => {
    void loadSettings();
  }, [loadSettings]);

  const production = settings?.mode === "production";
  useEffect(() => {
    setUnauthorizedHandler(
      production
        ? () => {
            setCsrfToken(null);
            setAuth({ state: "signed-out" });
          }
        : null,
    );
  }, [production]);

  const signedIn = auth.state === "signed-in";
  useEffect(() => {
    if (!signedIn) return;
    let alive = true;
    api
      .environments()
      .then((answer) => {
        if (!alive) return;
        const stored = readStoredEnvironment();
        const chosen = answer.data.some((e) => e.id === stored) ? stored : answer.current;
        setEnvironment(chosen);
        setEnvironments(answer.data);
        setEnvId(chosen);
        setEnvError(null);
      })
      .catch((err: unknown) => {
        if (!alive) return;
        // Pages still work against the server's default environment.
        setEnvError(`Could not load environments: ${errorText(err)}`);
        setEnvId("");
      });
    return () => {
      alive = false;
    };
  }, [signedIn]);

  const chooseEnvironment = (id: string) => {
    try {
      window.localStorage.setItem(ENV_KEY, id);
    } catch {
      // Storage can be unavailable (private mode); the choice then lasts for this tab only.
    }
    setEnvironment(id);
    setEnvId(id);
  };

  const signOut = async () => {
    setSignOutError(null);
    try {
      await api.signOut();
      setCsrfToken(null);
      setAuth({ state: "signed-out" });
    } catch (err) {
      setSignOutError(errorText(err));
    }
  };

  if (settingsError) {
    return (
      <main class="center-page">
        <h1>Stepline</h1>
        <ErrorBanner error={`Could not load settings: ${settingsError}`} />
        <button type="button" onClick={() => void loadSettings()}>
          Retry
        </button>
      </main>
    );
  }
  if (!settings || auth.state === "checking") return <p class="center-page muted">Loading…</p>;
  if (auth.state === "signed-out") {
    return (
      <SignInPage
        onSignedIn={(session) => {
          setCsrfToken(session.csrf_token);
          setAuth({ state: "signed-in", user: session.user });
        }}
      />
    );
  }

  return (
    <div class="layout">
      {/* The column stretches to the page's full height and carries the dark background; the nav
          inside it stays in view (sticky, one viewport tall) while the content scrolls. */}
      <div class="nav-column">
        <Nav
          path={loc.path}
          environments={environments}
          environmentId={envId}
          onEnvironment={chooseEnvironment}
          user={auth.user}
          onSignOut={production ? () => void signOut() : null}
          retentionDays={settings.history_retention_days}
          mode={settings.mode}
        />
      </div>
      <main class="content">
        <ErrorBanner error={envError ?? signOutError} />
        {/* Keyed on the environment so every page reloads its data when the environment changes. */}
        {envId !== null && <div key={envId}>{routePage(loc)}</div>}
      </main>
    </div>
  );
}
