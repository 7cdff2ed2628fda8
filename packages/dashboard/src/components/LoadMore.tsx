interface Props {
  cursor: string | null;
  busy: boolean;
  onMore: () => void;
}

/** "Load more" for cursor paging; hidden on the last page. */
export function LoadMore({ cursor, busy, onMore }: Props) {
  if (!cursor) return null;
  return (
    <div class="load-more">
      <button type="button" data-testid="load-more" disabled={busy} onClick={onMore}>
        {busy ? "Loading…" : "Load more"}
      </button>
    </div>
  );
}
