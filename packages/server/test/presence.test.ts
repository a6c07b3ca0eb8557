import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LocalPresence, type ClientConnection } from '../src/services/presence.js';

// The room fan-out walks `roomConnections`, an array kept per room and rebuilt after any change
// of the room's members or of their sessions. A stale array would push to a closed session or
// miss a new device, so every kind of change is checked after the array has been built once.

const PID = 7;
const R = 2n ** 62n + 5n;
const [A, B] = [2n ** 60n + 1n, 2n ** 60n + 2n];

let nextId = 1;
function session(uid: bigint, pid = PID): ClientConnection {
  return { id: nextId++, session: { pid, uid, attrs: {}, version: 'test' } } as unknown as ClientConnection;
}

const ids = (conns: readonly ClientConnection[]): number[] => conns.map((c) => c.id).sort((x, y) => x - y);

describe('LocalPresence.roomConnections', () => {
  it('follows joins, new devices, closed sessions, leaves and the last logout', () => {
    const p = new LocalPresence();
    const a1 = session(A);
    const b1 = session(B);
    p.add(a1);
    p.add(b1);
    assert.deepEqual(p.roomConnections(PID, R), [], 'no members yet');

    p.joinRoom(PID, R, A);
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([a1]));
    p.joinRoom(PID, R, B);
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([a1, b1]), 'a join after the array was built');

    const a2 = session(A);
    p.add(a2);
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([a1, a2, b1]), "a member's new device");

    const before = p.roomConnections(PID, R);
    assert.equal(p.remove(a1), false, 'A still has a session');
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([a2, b1]), 'a closed session');
    assert.deepEqual(ids(before), ids([a1, a2, b1]), 'an array handed out is never changed');

    p.leaveRoom(PID, R, B);
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([a2]));

    assert.equal(p.remove(a2), true, "A's last session");
    p.forgetRooms(PID, A);
    assert.deepEqual(p.roomConnections(PID, R), []);
    assert.equal(p.isInRoomLocally(PID, R, A), false);
  });

  it('keeps rooms of different projects apart, and the same array while nothing changes', () => {
    const p = new LocalPresence();
    const here = session(A);
    const other = session(A, PID + 1);
    p.add(here);
    p.add(other);
    p.joinRoom(PID, R, A);
    p.joinRoom(PID + 1, R, A);
    assert.deepEqual(ids(p.roomConnections(PID, R)), ids([here]));
    assert.deepEqual(ids(p.roomConnections(PID + 1, R)), ids([other]));
    assert.equal(p.roomConnections(PID, R), p.roomConnections(PID, R), 'built once');

    p.add(session(B)); // not a member: the room's array stays
    const kept = p.roomConnections(PID, R);
    assert.equal(p.roomConnections(PID, R), kept);
    p.remove(other); // the other project's room only
    assert.equal(p.roomConnections(PID, R), kept);
    assert.deepEqual(p.roomConnections(PID + 1, R), []);
  });
});
