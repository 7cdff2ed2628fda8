import type { StepError } from "../api";

interface Props {
  error: StepError;
  testid?: string;
}

/** A run's or step's error: name, message and stack, kept verbatim in a <pre>. */
export function ErrorDetails({ error, testid }: Props) {
  return (
    <div class="error-details" data-testid={testid}>
      <pre>
        <strong>{error.name || "Error"}</strong>: {error.message}
        {error.stack ? `\n\n${error.stack}` : ""}
      </pre>
    </div>
  );
}
