// Types of services.mjs for the TypeScript test harness, which builds clusters from the same list.
export interface ServicePorts {
  name: string;
  grpcPort: number;
  adminPort: number;
  httpPort?: number;
  /** event-api's control listener (TenantService). */
  controlPort?: number;
}
export const SERVICES: ServicePorts[];
export function serviceEnv(
  infra: { kafkaBrokers: string; redisUrl: string; clickhouseUrl: string },
  opts?: {
    dev?: boolean;
    services?: ServicePorts[];
    topicPrefix?: string;
    clickhouseDatabase?: string;
    internalToken?: string;
  },
): Record<string, Record<string, string>>;
