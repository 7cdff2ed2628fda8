import { useId } from "preact/hooks";

interface Props {
  label: string;
  value: string;
  onInput: (value: string) => void;
  error: string | null;
  testid: string;
  errorTestid?: string;
  rows?: number;
}

/** A monospace textarea for JSON, with its validation message shown right under it. */
export function JsonEditor({ label, value, onInput, error, testid, errorTestid, rows = 12 }: Props) {
  const id = useId();
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <textarea
        id={id}
        class={`code-editor${error ? " invalid" : ""}`}
        rows={rows}
        spellcheck={false}
        value={value}
        data-testid={testid}
        aria-invalid={error ? "true" : "false"}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
      {error && (
        <p class="field-error" data-testid={errorTestid} role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/** Parses JSON, returning the value or the parser's message. */
export function parseJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
