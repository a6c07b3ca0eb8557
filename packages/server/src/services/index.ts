import type { Bus } from '../bus/bus.js';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Store } from '../store/store.js';
import type { Delivery } from './delivery.js';
import type { GroupMembers } from './group-members.js';
import type { History } from './history.js';
import type { ListenRegistry } from './listen.js';
import type { Messaging } from './messaging.js';
import type { LocalPresence } from './presence.js';
import type { Sessions } from './sessions.js';

/** Everything a handler may call (DESIGN.md: handlers → services → store/bus). */
export interface Services {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: Store;
  readonly bus: Bus;
  readonly presence: LocalPresence;
  readonly listeners: ListenRegistry;
  readonly delivery: Delivery;
  /** Group members as sends need them, in memory; `changed` after every membership change. */
  readonly groups: GroupMembers;
  readonly messaging: Messaging;
  readonly history: History;
  readonly sessions: Sessions;
  /** This node's client gate as clients reach it (RTM_CLIENT_ENDPOINT, or the bind address): `host:port`. */
  readonly clientEndpoint: () => string;
}
