// Redis from the Debian package, persistent like production (AOF, fsync every second).
import fs from "node:fs";
import net from "node:net";
import { UserError, waitFor, which } from "../lib.mjs";

/** Returns how to launch redis-server with its data in dir. */
export function prepareRedis({ dir, port }) {
  const bin = which("redis-server");
  if (!bin) throw new UserError("redis-server not found (apt-get install redis-server)");
  fs.mkdirSync(dir, { recursive: true });
  return {
    cmd: bin,
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      // AOF is the persistence; RDB snapshots would only add fork() pauses.
      "--save",
      "",
      "--daemonize",
      "no",
    ],
  };
}

/** One raw PING over TCP: no client library needed, so this works before `npm ci`. */
function ping(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let reply = "";
    socket.setTimeout(1000, () => socket.destroy(new Error("PING timed out")));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      reply += d;
      if (reply.includes("\r\n")) {
        socket.destroy();
        // "-LOADING" while the AOF is replayed: not ready yet.
        resolve(reply.startsWith("+PONG"));
      }
    });
    socket.on("error", reject);
  });
}

export function waitForRedis({ port, timeoutMs, isAborted }) {
  return waitFor("Redis", () => ping(port), { timeoutMs, isAborted });
}
