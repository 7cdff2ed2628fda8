// Reads a password for the CLI from stdin, so it never lands in shell history or `ps`: the first
// line when stdin is piped (`printf '%s\n' "$PW" | stepline users create ...`), or typed twice
// at a prompt with echo off when stdin is a terminal.

/** What the reader needs of stdin (process.stdin, or a stream in tests). */
export interface PasswordInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/** Piped input beyond this is not a password. */
const MAX_PIPED_BYTES = 64 * 1024;

/** The password from `input`; throws with a message when there is none or the two typings differ. */
export async function readPassword(input: PasswordInput, prompt: (s: string) => void): Promise<string> {
  if (!input.isTTY || !input.setRawMode) return firstLine(input);
  const first = await typed(input, prompt, "password (not shown): ");
  const again = await typed(input, prompt, "the same again: ");
  if (first !== again) throw new Error("the two passwords differ");
  return first;
}

async function firstLine(input: PasswordInput): Promise<string> {
  let text = "";
  for await (const chunk of input) {
    text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    if (text.includes("\n") || text.length > MAX_PIPED_BYTES) break;
  }
  const line = text.split(/\r?\n/)[0] ?? "";
  if (!line) throw new Error("no password on stdin: pipe it in, or run in a terminal to type it");
  return line;
}

/** One line typed with echo off (raw mode); Ctrl-C or Ctrl-D gives up. */
function typed(input: PasswordInput, prompt: (s: string) => void, label: string): Promise<string> {
  prompt(label);
  input.setRawMode?.(true);
  input.resume();
  return new Promise((resolve, reject) => {
    let value = "";
    const done = (err: Error | null) => {
      input.removeListener("data", onData);
      input.setRawMode?.(false);
      input.pause();
      prompt("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of typeof chunk === "string" ? chunk : chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done(null);
        if (ch === "\u0003" || ch === "\u0004") return done(new Error("cancelled"));
        if (ch === "\u007f" || ch === "\b") value = [...value].slice(0, -1).join("");
        else value += ch;
      }
    };
    input.on("data", onData);
  });
}
