import { RtmError, RtmErrorCode } from '@rtm/fpnn';
import type { Services } from '../services/index.js';
import type { Store } from '../store/store.js';
import { KeyedSerial } from './serial.js';

/**
 * Membership changes shared by the server gate (server-api.md §4 "Groups", "Rooms", "Friends")
 * and the client gate (client-api.md §4), with the limits of errors-and-limits.md §3. Changes
 * that check a limit run one at a time per group, per user's rooms, and per project's friends.
 */
const changes = new KeyedSerial();

/**
 * Adds members to a group unless it would then hold more than `maxGroupMembers` (200042), or,
 * for a group without members yet, unless the project already holds `maxGroupsPerProject` groups
 * (200034).
 */
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
  if (added.length === 0) return;
  if (members.size === 0 && config.limits.maxGroupsPerProject > 0) {
    // A new group: checked and stored one at a time per project, under this group's turn (the
    // project's turn never waits for a group's, so the two cannot wait for each other).
    await changes.run(`groups:${pid}`, () => createGroup(services, pid, gid, added));
  } else {
    await store.addGroupMembers(pid, gid, added);
  }
  services.groups.changed(pid, gid);
}

/**
 * Groups per project (errors-and-limits.md §3, `maxGroupsPerProject`).
 *
 * What counts as a group: a gid with at least one member, nothing else. Groups have no create
 * call (server-api.md §4): the first add to a gid without members creates it, and removing its
 * last member or `delgroup` ends it, freeing its place at once. Info set on a gid without members
 * (`setgroupinfo` of the server gate) makes no group: nothing can be sent to it (200046) and it
 * holds nothing the limit is meant to bound; should members come, it counts from then.
 *
 * Only an add to a gid without members checks the limit (the client gate's needs the caller to be
 * a member, so only a group emptied meanwhile gets there): adds to existing groups cost nothing
 * more. The store counts with one index seek per group, up to the limit (Store.countGroups): at
 * 10,000 groups still ~10 ms of SQLite on the event loop, ~50 ms of PostgreSQL (measured). So a
 * count that found room is reused for a second, with the groups created here since added to it:
 * a backend creating its groups one after another pays one count a second, not one per group
 * (10,000 groups: 1.6 s instead of 29 s). A group ended meanwhile only makes the reused number
 * high, and a refusal is never made on a reused number but on a fresh count, so a freed place is
 * free at once. In one process the limit is exact; across the nodes of a cluster it is best
 * effort (serial.ts): groups created by another node within that second are not seen, and two
 * nodes creating groups at one moment may both pass.
 */
const COUNT_REUSE_MS = 1000;

interface GroupCount {
  /** Groups of the project at `at`, plus those created on this node since (an upper bound, in one process). */
  n: number;
  /** `performance.now()` of the count. */
  at: number;
}

/** Per store (tests run several servers in one process), per pid. */
const groupCounts = new WeakMap<Store, Map<number, GroupCount>>();

async function createGroup(services: Services, pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
  const { store, config } = services;
  const max = config.limits.maxGroupsPerProject;
  let counts = groupCounts.get(store);
  if (!counts) groupCounts.set(store, (counts = new Map()));
  let count = counts.get(pid);
  if (!count || count.n >= max || performance.now() - count.at >= COUNT_REUSE_MS) {
    counts.delete(pid);
    const at = performance.now();
    const n = await store.countGroups(pid, max);
    if (n >= max) {
      throw new RtmError(
        RtmErrorCode.INVALID_PARAMETER,
        `project ${pid} has reached its limit of ${max} groups, so group ${gid} (no members yet) cannot be created; ` +
          'delete groups no longer used or raise RTM_MAX_GROUPS_PER_PROJECT (0 = no limit)',
      );
    }
    counts.set(pid, (count = { n, at }));
  }
  await store.addGroupMembers(pid, gid, uids);
  count.n++;
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
  // Every room, entered or not: a re-entry is a new join time (Store.endPresence).
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
 * (only for rooms the user was in: no kickoutroom for a room never entered). In turn with the
 * user's joins: a leave sent after an enter (pipelined) must not be overtaken by it.
 */
export function leaveRooms(services: Services, pid: number, uid: bigint, rids: readonly bigint[], kick: boolean): Promise<void> {
  return changes.run(`rooms:${pid}:${uid}`, () => leaveRoomsNow(services, pid, uid, rids, kick));
}

async function leaveRoomsNow(services: Services, pid: number, uid: bigint, rids: readonly bigint[], kick: boolean): Promise<void> {
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

/** Ends friendships (both ways), in turn with the adds: a delete sent after an add is not overtaken by it. */
export function removeFriends(services: Services, pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
  return changes.run(`friends:${pid}`, () => services.store.removeFriends(pid, uid, [...new Set(friends)]));
}
