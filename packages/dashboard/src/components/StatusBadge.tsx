interface Props {
  status: string;
  testid?: string;
}

/** A coloured pill for run and step statuses; the colour comes from the status name (see views.css). */
export function StatusBadge({ status, testid }: Props) {
  return (
    <span class={`badge status-${status.toLowerCase()}`} data-testid={testid} data-status={status}>
      {status}
    </span>
  );
}
