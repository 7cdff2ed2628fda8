import { createLogger } from "@stepline/internal/log";
import type { Consumer } from "kafkajs";
import { describe, expect, it } from "vitest";
import { HandledOffsets } from "./handled-offsets.js";

type Commit = Parameters<Consumer["commitOffsets"]>[0];

/** A consumer whose commits are recorded, and fail while `failing` is set. */
function recordingConsumer() {
  const commits: Commit[] = [];
  const state = { failing: false, commits };
  const consumer = {
    commitOffsets: async (offsets: Commit) => {
      if (state.failing) throw new Error("The group is rebalancing");
      commits.push(offsets);
    },
  } as unknown as Consumer;
  return { consumer, state };
}

const log = createLogger("runner-test", "silent");

describe("handled offsets", () => {
  it("commits the offset after the last handled event of each partition, once", async () => {
    const { consumer, state } = recordingConsumer();
    const handled = new HandledOffsets("events", log);
    handled.mark(0, "41");
    handled.mark(0, "42");
    handled.mark(3, "9");
    await handled.commit(consumer);
    await handled.commit(consumer);
    expect(state.commits).toEqual([
      [
        { topic: "events", partition: 0, offset: "43" },
        { topic: "events", partition: 3, offset: "10" },
      ],
    ]);
  });

  it("keeps what a failed commit did not take, and drops partitions that moved away", async () => {
    const { consumer, state } = recordingConsumer();
    const handled = new HandledOffsets("events", log);
    handled.mark(0, "5");
    handled.mark(1, "7");
    state.failing = true;
    await handled.commit(consumer);
    expect(state.commits).toEqual([]);
    state.failing = false;
    handled.keepOnly([1, 2]);
    await handled.commit(consumer);
    expect(state.commits).toEqual([[{ topic: "events", partition: 1, offset: "8" }]]);
  });

  it("does not forget an offset handled while a commit was in flight", async () => {
    const commits: Commit[] = [];
    let release = () => {};
    const consumer = {
      commitOffsets: (offsets: Commit) => {
        commits.push(offsets);
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    } as unknown as Consumer;
    const handled = new HandledOffsets("events", log);
    handled.mark(0, "1");
    const first = handled.commit(consumer);
    handled.mark(0, "2");
    release();
    await first;
    const second = handled.commit(consumer);
    release();
    await second;
    expect(commits.map((c) => c[0]?.offset)).toEqual(["2", "3"]);
  });
});
