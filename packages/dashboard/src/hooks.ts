import { type Inputs, useCallback, useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  /** Loads again; keeps the old data on screen meanwhile. */
  reload: () => Promise<void>;
}

/** Runs `load` when `deps` change; ignores answers that arrive after a newer load started or unmount. */
export function useLoad<T>(load: () => Promise<T>, deps: Inputs): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );

  // The caller's deps decide when to load again.
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await load();
      if (!alive.current || mine !== generation.current) return;
      setData(value);
      setError(null);
    } catch (err) {
      if (!alive.current || mine !== generation.current) return;
      setError(errorText(err));
    } finally {
      if (alive.current && mine === generation.current) setLoading(false);
    }
  }, deps);

  useEffect(() => {
    void reload();
  }, [reload]);

  return { data, error, loading, reload };
}

/** Calls `tick` every `ms` while `enabled`; the latest `tick` is used, so it may close over fresh state. */
export function useInterval(tick: () => void, ms: number, enabled = true): void {
  const saved = useRef(tick);
  saved.current = tick;
  useEffect(() => {
    if (!enabled) return;
    const id = window.setInterval(() => saved.current(), ms);
    return () => window.clearInterval(id);
  }, [ms, enabled]);
}

/** Tracks one in-flight action (a button press): its busy state and its error text. */
export function useAction(): {
  busy: boolean;
  error: string | null;
  run: <T>(action: () => Promise<T>) => Promise<T | undefined>;
  clearError: () => void;
} {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = useCallback(async <T>(action: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await action();
    } catch (err) {
      setError(errorText(err));
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clearError: () => setError(null) };
}
