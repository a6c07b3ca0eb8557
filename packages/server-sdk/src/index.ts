/**
 * @rtm/server-sdk — the RTM server SDK for TypeScript: a backend's connection to the RTM server
 * gate (spec/server-api.md), API-compatible with highras/rtm-server-sdk-python in camelCase.
 */
export { RTMServerClient } from './client.js';
export {
  DEFAULT_AUTO_RECONNECT,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DEDUP_WINDOW_MS,
  DEFAULT_DEDUP_MAX_ENTRIES,
  DEFAULT_PING_TIMEOUT_MS,
  DEFAULT_QUEST_TIMEOUT_MS,
  DEFAULT_RECONNECT_POLICY,
  MAX_TIMEOUT_MS,
  MIN_RECONNECT_MAX_DELAY_MS,
  MAX_RECONNECT_STEPS,
  reconnectDelayMs,
  type EncryptionOptions,
  type Logger,
  type ReconnectPolicy,
  type RTMServerClientOptions,
} from './options.js';
export { signQuest } from './signature.js';
export type { Listener } from './emitter.js';
export type { Id } from './wire.js';
export {
  MessageType,
  type CallOptions,
  type ClosedInfo,
  type ConnectedInfo,
  type ConnectionState,
  type HistoryMessage,
  type HistoryOptions,
  type HistoryPage,
  type InfoPair,
  type ListenAll,
  type ListenLists,
  type MessageBody,
  type MessageNum,
  type PushEvent,
  type PushGroupMessage,
  type PushP2PMessage,
  type PushRoomMessage,
  type RetrievedMessage,
  type SendError,
  type SendOptions,
  type SendResult,
  type ServerClientEventName,
  type ServerClientEvents,
  type SetListenOptions,
} from './types.js';
// Re-exported so callers can test error codes without importing @rtm/fpnn themselves. `RTMError`
// is the same class under the name the RTM SDK docs use: `instanceof` works with either.
export { RtmError, RtmError as RTMError, RtmErrorCode, FpnnErrorCode } from '@rtm/fpnn';
