import { prettyJson } from "../format";

interface Props {
  value: unknown;
  testid?: string;
}

export function JsonBlock({ value, testid }: Props) {
  return (
    <pre class="json" data-testid={testid}>
      {prettyJson(value)}
    </pre>
  );
}
