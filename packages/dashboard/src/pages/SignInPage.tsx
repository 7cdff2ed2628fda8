import { useState } from "preact/hooks";
import { api, type Session } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { useAction } from "../hooks";

export function SignInPage({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();

  const submit = async (e: Event) => {
    e.preventDefault();
    const answer = await action.run(() => api.signIn(username, password));
    if (answer) onSignedIn(answer.data);
  };

  return (
    <main class="signin">
      <form class="card signin-card" onSubmit={submit}>
        <h1>Sign in to Stepline</h1>
        <div class="field">
          <label for="signin-user">Username</label>
          <input
            id="signin-user"
            autocomplete="username"
            data-testid="signin-user"
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="signin-password">Password</label>
          <input
            id="signin-password"
            type="password"
            autocomplete="current-password"
            data-testid="signin-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </div>
        <ErrorBanner error={action.error} />
        <button type="submit" class="primary" data-testid="signin-submit" disabled={action.busy || !username}>
          {action.busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
