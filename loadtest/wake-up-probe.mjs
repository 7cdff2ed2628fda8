// What a message between two processes costs this machine, in CPU: the figure that explains most
// of the engine's CPU per step (loadtest/README.md, "Why CPU per step falls as clients rise").
// Two processes exchange 200-byte messages over loopback TCP: many in flight (neither waits), one
// at a time (each waits for the other, briefly), and one at a time after a pause (both have gone
// idle, so each message wakes its receiver). Run alone with `node loadtest/wake-up-probe.mjs`;
// `npm run bench` prints it too.
import { fork } from "node:child_process";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const MESSAGE = Buffer.alloc(200, 1);
const PAUSE_MS = 2;

/** The echo side: answers each message, and its CPU use when asked over IPC. */
function serveEcho() {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", (d) => socket.write(d));
  });
  server.listen(0, "127.0.0.1", () => process.send?.({ port: server.address().port }));
  process.on("message", () => process.send?.({ cpu: process.cpuUsage() }));
}

const cpuUs = (u) => u.user + u.system;

/**
 * Sends `rounds` messages to the echo process three ways (below); returns for each the CPU of both
 * processes per message in µs and the median time to the answer.
 */
export async function probeWakeUps(rounds = 2000) {
  const child = fork(fileURLToPath(import.meta.url), ["--echo"], { stdio: "ignore" });
  const ask = () => new Promise((resolve) => child.once("message", resolve));
  try {
    const { port } = await ask();
    const socket = net.connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    // Sends `rounds` messages, keeping `window` of them unanswered, with `pauseMs` before each
    // window's first message; resolves with the CPU of both processes per message and the median
    // time from a message's send to its answer.
    const measure = async (window, pauseMs) => {
      const times = [];
      const childBefore = ask();
      child.send("cpu");
      const childStart = (await childBefore).cpu;
      const start = process.cpuUsage();
      for (let sent = 0; sent < rounds; sent += window) {
        if (pauseMs > 0) await sleep(pauseMs);
        const t0 = performance.now();
        const expected = window * MESSAGE.length;
        await new Promise((resolve) => {
          let received = 0;
          const onData = (d) => {
            received += d.length;
            if (received < expected) return;
            socket.off("data", onData);
            resolve();
          };
          socket.on("data", onData);
          for (let i = 0; i < window; i++) socket.write(MESSAGE);
        });
        times.push(performance.now() - t0);
      }
      const own = cpuUs(process.cpuUsage(start));
      const childAfter = ask();
      child.send("cpu");
      const echo = cpuUs((await childAfter).cpu) - cpuUs(childStart);
      times.sort((a, b) => a - b);
      return {
        cpuUsPerMessage: Math.round((own + echo) / rounds),
        medianUs: Math.round((times[Math.floor(times.length / 2)] ?? 0) * 1000),
      };
    };
    await measure(1, 0); // warm-up: JIT and socket buffers
    // Many in flight: neither side waits, and reads and writes carry several messages each.
    const streaming = await measure(64, 0);
    // One at a time: each side waits for the other, briefly, before every message.
    const pingPong = await measure(1, 0);
    // One at a time after a pause: both have gone idle, so each message wakes its receiver.
    const afterIdle = await measure(1, PAUSE_MS);
    socket.destroy();
    return { streaming, pingPong, afterIdle };
  } finally {
    child.kill();
  }
}

/** One line saying what the probe found. */
export function describeWakeUps({ streaming, pingPong, afterIdle }) {
  return (
    `this machine, CPU of both processes per message and its answer over loopback: ${streaming.cpuUsPerMessage} µs ` +
    `while many are in flight, ${pingPong.cpuUsPerMessage} µs one at a time (each side waits for the other), ` +
    `${afterIdle.cpuUsPerMessage} µs after both had gone idle (median ${afterIdle.medianUs} µs to the answer)\n`
  );
}

if (process.argv[2] === "--echo") serveEcho();
else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await probeWakeUps();
  process.stdout.write(`${JSON.stringify({ probe: "wake-ups", ...result })}\n${describeWakeUps(result)}`);
}
