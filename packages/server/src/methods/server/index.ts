import type { MethodTable, ServerContext } from '../method.js';
import * as groups from './groups.js';
import * as info from './info.js';
import * as listen from './listen.js';
import * as messages from './messages.js';
import * as moderation from './moderation.js';
import * as rooms from './rooms.js';
import * as sessions from './sessions.js';
import * as social from './social.js';

/**
 * The server gate's dispatch table (server-api.md): one entry per wire method. Each module exports
 * only method definitions, named exactly as the wire method.
 */
export const serverMethods: MethodTable<ServerContext> = Object.freeze({
  ...messages,
  ...sessions,
  ...groups,
  ...rooms,
  ...moderation,
  ...social,
  ...info,
  ...listen,
});
