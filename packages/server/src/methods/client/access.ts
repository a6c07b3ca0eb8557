import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { ClientContext } from '../method.js';

// client-api.md §5 (rights summary).

/** Group reads need membership (200041). */
export async function requireGroupMember(ctx: ClientContext, gid: bigint): Promise<void> {
  if (!(await ctx.services.store.isGroupMember(ctx.pid, gid, ctx.uid))) {
    throw new RtmError(RtmErrorCode.NOT_GROUP_MEMBER, `user ${ctx.uid} is not a member of group ${gid}`);
  }
}

/** Room reads need presence in the room (200040). */
export async function requireInRoom(ctx: ClientContext, rid: bigint): Promise<void> {
  if (ctx.services.presence.isInRoomLocally(ctx.pid, rid, ctx.uid)) return;
  if (!(await ctx.services.store.userRooms(ctx.pid, ctx.uid)).includes(rid)) {
    throw new RtmError(RtmErrorCode.NOT_IN_ROOM, `user ${ctx.uid} is not in room ${rid}`);
  }
}
