export { RTMClient } from './client.js';
export type { SessionState } from './session.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DUPLICATE_FILTER_MS,
  DEFAULT_MAX_PING_INTERVAL_SECONDS,
  DEFAULT_QUEST_TIMEOUT_MS,
  DEFAULT_RECONNECT_STRATEGY,
  SDK_VERSION,
  endpointToUrl,
  type Logger,
  type NetworkEvents,
  type ReconnectStrategy,
  type RTMClientOptions,
} from './options.js';
export { defaultWebSocketFactory, type WebSocketFactory, type WebSocketLike } from './transport.js';
export * from './types.js';
// `RTMError` is the same class under the name the RTM SDK docs use: `instanceof` works with either.
export { RtmError, RtmError as RTMError, FpnnErrorCode, RtmErrorCode } from '@rtm/fpnn';
