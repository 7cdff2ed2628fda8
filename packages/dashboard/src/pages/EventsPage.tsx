import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, errorText, type StoredEvent } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { LoadMore } from "../components/LoadMore";
import { formatTime, timeAgo } from "../format";
import { useInterval } from "../hooks";
import { href, Link, navigate } from "../router";

const PAGE = 20;
// A poll asks for everything newer than the newest row; more than this many means we missed some.
const POLL_LIMIT = 100;

function preview(data: unknown): string {
  const text = JSON.stringify(data) ?? "";
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

function openRow(e: MouseEvent, id: string) {
  if ((e.target as HTMLElement).closest("a, button")) return;
  navigate(`/events/${encodeURIComponent(id)}`);
}

/** Keeps what the user is looking at in place when rows are added above it. */
function useKeepScrollPlace(items: unknown[]) {
  const before = useRef<{ height: number; y: number } | null>(null);
  const remember = () => {
    before.current = { height: document.documentElement.scrollHeight, y: window.scrollY };
  };
  useLayoutEffect(() => {
    const b = before.current;
    before.current = null;
    if (!b || b.y <= 0) return;
    const grown = document.documentElement.scrollHeight - b.height;
    if (grown > 0) window.scrollTo(0, b.y + grown);
  }, [items]);
  return remember;
}

function EventRow({ event, isNew }: { event: StoredEvent; isNew: boolean }) {
  const url = `/events/${encodeURIComponent(event.id)}`;
  return (
    // The whole row is clickable for the mouse; the name link is the keyboard path.
    <tr
      class={`clickable${isNew ? " row-new" : ""}`}
      data-testid="event-row"
      data-event-id={event.id}
      onClick={(e) => openRow(e, event.id)}
    >
      <td class="nowrap" title={timeAgo(event.received_at)}>
        {formatTime(event.received_at)}
      </td>
      <td>
        <Link href={url}>{event.name}</Link>
      </td>
      <td class="mono small">{event.id}</td>
      <td class="mono small muted preview">{preview(event.data)}</td>
    </tr>
  );
}

export function EventsPage({ query }: { query: URLSearchParams }) {
  const name = query.get("name") ?? "";
  const [input, setInput] = useState(name);
  const [items, setItems] = useState<StoredEvent[]>([]);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const generation = useRef(0);
  const polling = useRef(false);
  const remember = useKeepScrollPlace(items);

  // The filter lives in the URL; typing updates it after a short pause.
  useEffect(() => {
    const t = window.setTimeout(() => {
      if (input.trim() !== name) navigate(href("/events", { name: input.trim() }), { replace: true });
    }, 350);
    return () => window.clearTimeout(t);
  }, [input, name]);

  useEffect(() => {
    const mine = ++generation.current;
    setLoading(true);
    api
      .events({ name, limit: PAGE })
      .then((answer) => {
        if (mine !== generation.current) return;
        setItems(answer.data);
        setCursor(answer.cursor);
        setFresh(new Set());
        setError(null);
      })
      .catch((err: unknown) => {
        if (mine === generation.current) setError(errorText(err));
      })
      .finally(() => {
        if (mine === generation.current) setLoading(false);
      });
  }, [name]);

  const poll = async () => {
    if (loading || polling.current) return;
    polling.current = true;
    const mine = generation.current;
    const newest = items[0];
    try {
      const answer = await api.events({ name, limit: POLL_LIMIT, received_after: newest?.received_at });
      if (mine !== generation.current) return;
      setError(null);
      const known = new Set(items.map((e) => e.id));
      const added = answer.data.filter((e) => !known.has(e.id));
      if (added.length === 0) return;
      remember();
      setFresh(new Set(added.map((e) => e.id)));
      if (answer.data.length >= POLL_LIMIT && answer.cursor) {
        // Too many arrived to stitch the lists together; start over from this newest page.
        setItems(answer.data);
        setCursor(answer.cursor);
      } else {
        setItems([...added, ...items]);
        if (!newest) setCursor(answer.cursor);
      }
    } catch (err) {
      if (mine === generation.current) setError(errorText(err));
    } finally {
      polling.current = false;
    }
  };
  useInterval(() => void poll(), 2000);

  const loadMore = async () => {
    if (!cursor) return;
    const mine = generation.current;
    setLoadingMore(true);
    try {
      const answer = await api.events({ name, limit: PAGE, cursor });
      if (mine !== generation.current) return;
      const known = new Set(items.map((e) => e.id));
      setItems([...items, ...answer.data.filter((e) => !known.has(e.id))]);
      setCursor(answer.cursor);
      setError(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setLoadingMore(false);
    }
  };

  const names = [...new Set(items.map((e) => e.name))].sort();
  return (
    <section>
      <div class="page-head">
        <h1>Events</h1>
        <span class="muted small" title="Refreshes every 2 seconds">
          <span class="dot status-completed" />
          Live
        </span>
      </div>
      <div class="filters">
        <div class="field">
          <label for="event-name-filter">Event name</label>
          <input
            id="event-name-filter"
            type="search"
            list="event-names"
            placeholder="exact name, e.g. shop/order.placed"
            value={input}
            data-testid="event-name-filter"
            onInput={(e) => setInput(e.currentTarget.value)}
          />
          <datalist id="event-names">
            {names.map((n) => (
              <option key={n} value={n} />
            ))}
          </datalist>
        </div>
      </div>
      <ErrorBanner error={error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Received</th>
              <th>Name</th>
              <th>ID</th>
              <th>Data</th>
            </tr>
          </thead>
          <tbody>
            {!loading && items.length === 0 && (
              <tr>
                <td colSpan={4} class="empty">
                  {name ? `No events named ${name} yet.` : "No events yet."}{" "}
                  <Link href="/send">Send one</Link>
                </td>
              </tr>
            )}
            {items.map((event) => (
              <EventRow key={event.id} event={event} isNew={fresh.has(event.id)} />
            ))}
          </tbody>
        </table>
      </div>
      <LoadMore cursor={cursor} busy={loadingMore} onMore={() => void loadMore()} />
    </section>
  );
}
