import { envInt, envString, secureUrl, serviceBasics, type Env, type ServiceBasics } from "@satchel/proto";

export interface NotifyserverConfig extends ServiceBasics {
  /** The metaserver, which says which namespaces each user may watch (MetaAdminService.ListMemberships). */
  metaserverUrl: string;
  /** How often open streams' memberships are checked again (an ended one is also announced at once through Redis). */
  membershipRecheckSeconds: number;
  heartbeatSeconds: number;
  /** Open streams and long polls one user may hold on this server. */
  maxStreamsPerUser: number;
  /** Open streams and long polls this server holds in all. */
  maxStreams: number;
  /** How long a Poll waits at most. */
  pollTimeoutSeconds: number;
  /** On shutdown, clients are told to reconnect after a random delay up to this. */
  drainSpreadMs: number;
}

export function loadConfig(env: Env = process.env): NotifyserverConfig {
  const basics = serviceBasics(env, "notifyserver", 7302);
  const config: NotifyserverConfig = {
    ...basics,
    metaserverUrl: secureUrl("SATCHEL_METASERVER_URL", envString(env, "SATCHEL_METASERVER_URL", `${basics.tls ? "https" : "http"}://127.0.0.1:7300`), basics.tls),
    membershipRecheckSeconds: envInt(env, "SATCHEL_NOTIFY_MEMBERSHIP_RECHECK_SECONDS", 30),
    heartbeatSeconds: envInt(env, "SATCHEL_HEARTBEAT_SECONDS", 15),
    maxStreamsPerUser: envInt(env, "SATCHEL_NOTIFY_MAX_STREAMS_PER_USER", 32),
    maxStreams: envInt(env, "SATCHEL_NOTIFY_MAX_STREAMS", 20_000),
    pollTimeoutSeconds: envInt(env, "SATCHEL_NOTIFY_POLL_TIMEOUT_SECONDS", 30),
    drainSpreadMs: envInt(env, "SATCHEL_NOTIFY_DRAIN_SPREAD_MS", 5000),
  };
  return config;
}
