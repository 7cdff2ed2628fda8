import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, errorText, type Run, type RunFilter } from "../api";
import { ErrorBanner, Notice } from "../components/ErrorBanner";
import { LoadMore } from "../components/LoadMore";
import { ConfirmDialog } from "../components/Modal";
import {
  describeFilter,
  type FilterState,
  filterQuery,
  RunFilters,
  readFilter,
  toApiFilter,
} from "../components/RunFilters";
import { RunsTable } from "../components/RunsTable";
import { useAction, useLoad } from "../hooks";
import { href, navigate } from "../router";

type Bulk = "cancel" | "replay";

function BulkConfirm(props: {
  kind: Bulk;
  filter: RunFilter;
  onDone: (message: string) => void;
  onClose: () => void;
}) {
  const action = useAction();
  const confirm = async () => {
    const message = await action.run(async () => {
      if (props.kind === "cancel") {
        const r = (await api.cancelRuns(props.filter)).data;
        return `Cancelled ${r.cancelled} of ${r.matched} matching runs.`;
      }
      const r = (await api.replayRuns(props.filter)).data;
      return `Replayed ${r.replayed} of ${r.matched} matching runs.`;
    });
    if (message) props.onDone(message);
  };
  return (
    <ConfirmDialog
      title={props.kind === "cancel" ? "Cancel all matching runs?" : "Replay all matching runs?"}
      confirmLabel={props.kind === "cancel" ? "Cancel runs" : "Replay runs"}
      danger={props.kind === "cancel"}
      busy={action.busy}
      onConfirm={() => void confirm()}
      onCancel={props.onClose}
    >
      <p>
        {props.kind === "cancel"
          ? "Every run matching this filter that is still running will be cancelled:"
          : "Every run matching this filter will be started again with the same trigger event:"}
      </p>
      <ul class="filter-summary" data-testid="confirm-filter">
        {describeFilter(props.filter).map((line) => (
          <li key={line}>{line}</li>
        ))}
      </ul>
      <ErrorBanner error={action.error} />
    </ConfirmDialog>
  );
}

export function RunsPage({ query }: { query: URLSearchParams }) {
  const queryString = query.toString();
  const filter = useMemo(() => readFilter(new URLSearchParams(queryString)), [queryString]);
  const [refreshed, setRefreshed] = useState(() => Date.now());
  // Relative ranges are fixed when the filter is applied, so paging and bulk actions agree.
  const apiFilter = useMemo(() => toApiFilter(filter, refreshed), [filter, refreshed]);
  const functions = useLoad(() => api.functions(), []);
  const [runs, setRuns] = useState<Run[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [bulk, setBulk] = useState<Bulk | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const generation = useRef(0);

  const load = async (after: string | null) => {
    const mine = after ? generation.current : ++generation.current;
    setLoading(true);
    try {
      const answer = await api.runs(apiFilter, after);
      if (mine !== generation.current) return;
      setRuns((old) =>
        after ? [...old, ...answer.data.filter((r) => !old.some((o) => o.run_id === r.run_id))] : answer.data,
      );
      setCursor(answer.cursor);
      setError(null);
    } catch (err) {
      if (mine === generation.current) setError(errorText(err));
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  };

  // A new apiFilter (filter change or Refresh) starts the list over.
  useEffect(() => {
    void load(null);
  }, [apiFilter]);

  const change = (f: FilterState) => {
    setNotice(null);
    navigate(href("/runs", filterQuery(f)), { replace: true });
    setRefreshed(Date.now());
  };

  return (
    <section>
      <div class="page-head">
        <h1>Runs</h1>
        <div class="actions">
          <button type="button" onClick={() => setRefreshed(Date.now())}>
            Refresh
          </button>
          <button type="button" data-testid="bulk-replay" onClick={() => setBulk("replay")}>
            Replay all matching
          </button>
          <button type="button" class="danger" data-testid="bulk-cancel" onClick={() => setBulk("cancel")}>
            Cancel all matching
          </button>
        </div>
      </div>
      <RunFilters filter={filter} functions={functions.data?.data ?? []} onChange={change} />
      <ErrorBanner error={functions.error && `Could not load functions: ${functions.error}`} />
      {notice && <Notice testid="bulk-result">{notice}</Notice>}
      <ErrorBanner error={error} />
      <RunsTable runs={runs} empty={loading ? "Loading…" : "No runs match this filter."} />
      <LoadMore cursor={cursor} busy={loading} onMore={() => void load(cursor)} />
      {bulk && (
        <BulkConfirm
          kind={bulk}
          filter={apiFilter}
          onClose={() => setBulk(null)}
          onDone={(message) => {
            setBulk(null);
            setNotice(message);
            setRefreshed(Date.now());
          }}
        />
      )}
    </section>
  );
}
