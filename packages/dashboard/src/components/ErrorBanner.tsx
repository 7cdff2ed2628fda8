import type { ComponentChildren } from "preact";

interface Props {
  error: string | null | undefined;
  onDismiss?: () => void;
}

/** A visible message with the server's error text; renders nothing when there is no error. */
export function ErrorBanner({ error, onDismiss }: Props) {
  if (!error) return null;
  return (
    <div class="banner banner-error" role="alert" data-testid="error-banner">
      <span>{error}</span>
      {onDismiss && (
        <button type="button" class="link-button" onClick={onDismiss} aria-label="Dismiss">
          ×
        </button>
      )}
    </div>
  );
}

export function Notice({ children, testid }: { children: ComponentChildren; testid?: string }) {
  return (
    <div class="banner banner-ok" role="status" data-testid={testid}>
      {children}
    </div>
  );
}
