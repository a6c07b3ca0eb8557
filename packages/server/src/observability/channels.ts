import { channel } from 'node:diagnostics_channel';
import type { SendRequest } from '../services/messaging.js';
import type { StoredMessage } from '../store/store.js';

/**
 * Diagnostics channels (`node:diagnostics_channel`) of the send path, for tracing tools in the
 * server's process (an APM agent, the latency bench's probe): they see each send when it starts and
 * each of its messages once stored, just before it is delivered, and take their own timestamps.
 * Publishing costs a property read while no one subscribes.
 *
 * - `rtm:send:received` — the `SendRequest`, when `Messaging.send` starts: its quest was decoded
 *   moments before, in the same turn. A send refused by its checks gets no `stored` event.
 * - `rtm:send:stored` — `{ request, message }` for each message the send stored (not for an
 *   idempotent resend), before it is published for delivery.
 */
export const sendReceivedChannel = channel('rtm:send:received');
export const sendStoredChannel = channel('rtm:send:stored');

/** What `rtm:send:stored` carries. */
export interface SendStoredEvent {
  request: SendRequest;
  message: StoredMessage;
}
