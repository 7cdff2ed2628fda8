// Which addresses Stepline may call on a tenant's behalf: the executor's calls of apps, and
// event-api's sync of an app by URL. An app URL comes from whoever synced the app, so in
// production mode a tenant could point it at the cluster's own services (Redis, ClickHouse, the
// cloud's metadata endpoint) and read the answer back through its run's error or the sync's. The policy is
// checked on the addresses a name resolves to, at connect time (a lookup hook on the HTTP agent),
// so a name that resolves to a public address when synced and a private one later is refused too.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from "node:dns";
import { BlockList, isIP } from "node:net";

/** Ranges refused in production mode, by why. */
const RANGES: Array<[kind: Kind, network: string, prefix: number, type: "ipv4" | "ipv6"]> = [
  ["loopback", "127.0.0.0", 8, "ipv4"],
  ["loopback", "::1", 128, "ipv6"],
  ["unspecified", "0.0.0.0", 8, "ipv4"],
  ["unspecified", "::", 128, "ipv6"],
  ["private", "10.0.0.0", 8, "ipv4"],
  ["private", "172.16.0.0", 12, "ipv4"],
  ["private", "192.168.0.0", 16, "ipv4"],
  ["private", "100.64.0.0", 10, "ipv4"],
  ["private", "fc00::", 7, "ipv6"],
  ["link-local", "169.254.0.0", 16, "ipv4"],
  ["link-local", "fe80::", 10, "ipv6"],
  ["metadata", "fd00:ec2::254", 128, "ipv6"],
  ["multicast", "224.0.0.0", 4, "ipv4"],
  ["multicast", "ff00::", 8, "ipv6"],
  ["reserved", "240.0.0.0", 4, "ipv4"],
];

type Kind = "loopback" | "unspecified" | "private" | "link-local" | "metadata" | "multicast" | "reserved";

export interface EgressPolicy {
  /** Who calls, and the variable that allows more, for the refusal's message. */
  readonly who: string;
  readonly allowVariable: string;
  /** Why `address` may not be called, or null when it may. */
  refusal(address: string): string | null;
  /** True when `hostname` is allowed by name (its addresses are not checked). */
  allowsHost(hostname: string): boolean;
}

/** Thrown (through the connect) when an app URL resolves to an address the policy refuses. */
export class EgressRefusedError extends Error {
  override name = "EgressRefusedError";
}

/**
 * The policy: production mode refuses every range above; dev mode (apps on the developer's machine
 * or a compose network) allows loopback and private addresses, never link-local or metadata ones.
 * `allow` lists host names and addresses or CIDR ranges (comma-separated) that are always allowed.
 */
export function egressPolicy(opts: {
  dev: boolean;
  allow: string;
  who?: string;
  allowVariable?: string;
}): EgressPolicy {
  const refused = new Map<Kind, BlockList>();
  for (const [kind, network, prefix, type] of RANGES) {
    if (opts.dev && (kind === "loopback" || kind === "private")) continue;
    let list = refused.get(kind);
    if (!list) {
      list = new BlockList();
      refused.set(kind, list);
    }
    list.addSubnet(network, prefix, type);
  }
  const allowedHosts = new Set<string>();
  const allowed = new BlockList();
  for (const raw of opts.allow.split(",")) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    const [address, bits] = entry.split("/");
    const family = isIP(address ?? "");
    if (family === 0) allowedHosts.add(entry);
    else if (bits === undefined) allowed.addAddress(address ?? "", family === 4 ? "ipv4" : "ipv6");
    else allowed.addSubnet(address ?? "", Number(bits), family === 4 ? "ipv4" : "ipv6");
  }
  const judge = (address: string): Kind | null => {
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (allowed.check(address, family)) return null;
    // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is judged as the IPv4 one.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    if (mapped) return judge(mapped);
    for (const [kind, list] of refused) if (list.check(address, family)) return kind;
    return null;
  };
  // Every app call asks about its address, and apps have few: BlockList.check builds a
  // SocketAddress per list each time, a measurable share of the executor's CPU per step.
  const judged = new Map<string, Kind | null>();
  return {
    who: opts.who ?? "the executor",
    allowVariable: opts.allowVariable ?? "STEPLINE_EXECUTOR_EGRESS_ALLOW",
    allowsHost: (hostname) => allowedHosts.has(hostname.toLowerCase()),
    refusal(address) {
      const known = judged.get(address);
      if (known !== undefined) return known;
      const kind = judge(address);
      if (judged.size >= 4_096) judged.clear();
      judged.set(address, kind);
      return kind;
    },
  };
}

/** The error a refused address gets: what was refused, why, and how to allow it. */
export function refusedMessage(policy: EgressPolicy, host: string, address: string, kind: string): string {
  const where = host === address ? address : `${host} (${address})`;
  return `egress policy: ${policy.who} does not call ${where}, a ${kind} address; allow it with ${policy.allowVariable}`;
}

/**
 * The refusal of a URL whose host is an address (never looked up, so the connect-time check does
 * not see it), or null.
 */
export function literalRefusal(policy: EgressPolicy, url: URL): string | null {
  const literal = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!isIP(literal) || policy.allowsHost(literal)) return null;
  const kind = policy.refusal(literal);
  return kind ? refusedMessage(policy, literal, literal, kind) : null;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net/tls connects that resolves as usual and refuses when any address the name
 * resolves to is refused by `policy` (so the connection cannot pick an allowed one now and a
 * refused one on a retry).
 */
export function guardedLookup(policy: EgressPolicy) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const all: LookupAllOptions = { ...options, all: true };
    dnsLookup(hostname, all, (err, addresses) => {
      if (err) return callback(err, []);
      if (!policy.allowsHost(hostname)) {
        for (const a of addresses) {
          const kind = policy.refusal(a.address);
          if (kind) {
            return callback(new EgressRefusedError(refusedMessage(policy, hostname, a.address, kind)), []);
          }
        }
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first)
        return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), []);
      callback(null, first.address, first.family);
    });
  };
}
