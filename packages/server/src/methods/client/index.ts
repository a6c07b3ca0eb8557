import type { ClientContext, MethodTable } from '../method.js';
import * as conversations from './conversations.js';
import * as groups from './groups.js';
import * as info from './info.js';
import * as messages from './messages.js';
import * as rooms from './rooms.js';
import * as social from './social.js';
import * as system from './system.js';
import * as unread from './unread.js';
import * as users from './users.js';

/**
 * The client gate's dispatch table (client-api.md); `auth` and `bye` live in the gate itself.
 * Each module exports only method definitions, named exactly as the wire method.
 */
export const clientMethods: MethodTable<ClientContext> = Object.freeze({
  ...messages,
  ...unread,
  ...conversations,
  ...groups,
  ...rooms,
  ...social,
  ...info,
  ...system,
  ...users,
});
