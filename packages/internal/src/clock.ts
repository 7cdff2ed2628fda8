// One clock interface so tests can control time; epoch milliseconds everywhere.

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
