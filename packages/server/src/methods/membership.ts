import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { Services } from '../services/index.js';
import { KeyedSerial } from './serial.js';

/**
 * Membership changes shared by the server gate (server-api.md §4 "Groups", "Rooms", "Friends")
 * and the client gate (client-api.md §4), with the limits of errors-and-limits.md §3. Changes
 * that check a limit run one at a time per group, per user's rooms, and per project's friends.
 */
const changes = new KeyedSerial();

/** Adds members to a group unless it would then hold more than `maxGroupMembers` (200042). */
export function addGroupMembers(services: Services, pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
  return changes.run(`group:${pid}:${gid}`, () => addGroupMembersNow(services, pid, gid, uids));
}

async function addGroupMembersNow(services: Services, pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
  const { store, config } = services;
  const max = config.limits.maxGroupMembers;
  const members = new Set(await store.groupMembers(pid, gid));
  const added = [...new Set(uids)].filter((uid) => !members.has(uid));
  if (members.size + added.length > max) {
    throw new RtmError(
      RtmErrorCode.MAX_GROUP_MEMBER_COUNT,
      `group ${gid} has ${members.size} members; adding ${added.length} would exceed the limit of ${max}`,
    );
  }
  if (added.length > 0) {
    await store.addGroupMembers(pid, gid, added);
    services.groups.changed(pid, gid);
  }
}

/** Removes members from a group. */
export function removeGroupMembers(services: Services, pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
  return changes.run(`group:${pid}:${gid}`, async () => {
    await services.store.removeGroupMembers(pid, gid, [...new Set(uids)]);
    services.groups.changed(pid, gid);
  });
}

/** Removes every member of a group, and its info. */
export function deleteGroup(services: Services, pid: number, gid: bigint): Promise<void> {
  return changes.run(`group:${pid}:${gid}`, async () => {
    await services.store.deleteGroup(pid, gid);
    services.groups.changed(pid, gid);
  });
}

/** The rooms of `rids` that `uid` is not in yet; 200047 when entering them would exceed `maxRoomsPerUser`. */
export async function roomsToEnter(services: Services, pid: number, uid: bigint, rids: readonly bigint[]): Promise<bigint[]> {
  const max = services.config.limits.maxRoomsPerUser;
  const current = new Set(await services.store.userRooms(pid, uid));
  const fresh = [...new Set(rids)].filter((rid) => !current.has(rid));
  if (current.size + fresh.length > max) {
    throw new RtmError(
      RtmErrorCode.ENTER_TOO_MANY_ROOMS,
      `user ${uid} is in ${current.size} rooms; entering ${fresh.length} more would exceed the limit of ${max}`,
    );
  }
  return fresh;
}

/**
 * Puts `uid` into `rids` (store, then a bus `room` event so the node holding the user's sessions
 * indexes it). Refuses with 200047 when the user would then be in more than `maxRoomsPerUser`.
 */
export function joinRooms(services: Services, pid: number, uid: bigint, rids: readonly bigint[]): Promise<void> {
  return changes.run(`rooms:${pid}:${uid}`, () => joinRoomsNow(services, pid, uid, rids));
}

async function joinRoomsNow(services: Services, pid: number, uid: bigint, rids: readonly bigint[]): Promise<void> {
  const { store, bus, presence } = services;
  await roomsToEnter(services, pid, uid, rids); // the limit, counting only rooms not entered yet
  // Every room, entered or not: a re-entry is a new join time (Store.clearUserRooms).
  for (const rid of new Set(rids)) await store.addRoomMember(pid, rid, uid);
  for (const rid of new Set(rids)) {
    // Index at once on this node if the user is online here (no wait for a remote bus round trip);
    // the bus event does the same on every node (idempotent).
    if (presence.isOnline(pid, uid)) presence.joinRoom(pid, rid, uid);
    bus.publish({ type: 'room', pid, rid, uid, joined: true, kick: false });
  }
}

/**
 * Takes `uid` out of `rids`; `kick` also sends oneway `kickoutroom {rid}` to the user's sessions
 * (only for rooms the user was in: no kickoutroom for a room never entered).
 */
export async function leaveRooms(services: Services, pid: number, uid: bigint, rids: readonly bigint[], kick: boolean): Promise<void> {
  const { store, bus, presence } = services;
  const wasIn = new Set(await store.userRooms(pid, uid));
  for (const rid of new Set(rids)) {
    await store.removeRoomMember(pid, rid, uid);
    const kicked = kick && (wasIn.has(rid) || presence.isInRoomLocally(pid, rid, uid));
    if (!kicked) presence.leaveRoom(pid, rid, uid);
    bus.publish({ type: 'room', pid, rid, uid, joined: false, kick: kicked });
  }
}

/** Room counts keyed by decimal rid, 0 for empty rooms (server-api.md §4 "Rooms"). */
export async function roomCounts(services: Services, pid: number, rids: readonly bigint[]): Promise<Record<string, number>> {
  const unique = [...new Set(rids)];
  const counts = await services.store.roomCounts(pid, unique);
  const out: Record<string, number> = {};
  for (const rid of unique) out[rid.toString()] = counts.get(rid) ?? 0;
  return out;
}

/**
 * Friendship is symmetric (server-api.md §4 "Friends"): refuses with 200048 when `uid` or any new
 * friend would then have more than `maxFriends` friends.
 */
export function addFriends(services: Services, pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
  // Per project: a friendship counts against both users' limits.
  return changes.run(`friends:${pid}`, () => addFriendsNow(services, pid, uid, friends));
}

async function addFriendsNow(services: Services, pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
  const { store, config } = services;
  const max = config.limits.maxFriends;
  const candidates = [...new Set(friends)].filter((f) => f !== uid);
  if (candidates.length === 0) return;
  const already = new Set(await store.filterFriends(pid, uid, candidates));
  const added = candidates.filter((f) => !already.has(f));
  if (added.length === 0) return;
  const own = (await store.friends(pid, uid)).length;
  if (own + added.length > max) {
    throw new RtmError(
      RtmErrorCode.MAX_FRIEND_COUNT,
      `user ${uid} has ${own} friends; adding ${added.length} would exceed the limit of ${max}`,
    );
  }
  for (const f of added) {
    if ((await store.friends(pid, f)).length + 1 > max) {
      throw new RtmError(RtmErrorCode.MAX_FRIEND_COUNT, `user ${f} already has the maximum of ${max} friends`);
    }
  }
  await store.addFriends(pid, uid, added);
}
