import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { clientAddress, ConnectionLimits, type ConnectionSlot } from '../src/transport/connection-limits.js';

// The counting behind RTM_MAX_CLIENT_CONNECTIONS and RTM_MAX_CONNECTIONS_PER_ADDRESS, alone: a
// slot per connection, counted against its address once known, given back exactly once however
// often the ways a connection ends ask. The same over real sockets: client-gate-limits.test.ts.

describe('ConnectionLimits', () => {
  it('refuses the connection over the total, and the one over its address, until a slot is given back', () => {
    const limits = new ConnectionLimits({ maxConnections: 3, maxPerAddress: 2 });
    const a1 = limits.admit()!;
    const a2 = limits.admit()!;
    assert.ok(a1.claim('10.0.0.1') && a2.claim('10.0.0.1'));
    const a3 = limits.admit()!;
    assert.equal(a3.claim('10.0.0.1'), false, 'a third from 10.0.0.1');
    assert.equal(limits.admit(), undefined, 'a fourth in all, the refused one still holding its slot until it closes');
    a3.release();
    const b = limits.admit()!;
    assert.ok(b.claim('10.0.0.2'), 'another address');
    assert.deepEqual([limits.connections, limits.addresses, limits.busiestAddress()], [3, 2, 2]);
    a1.release();
    const again = limits.admit()!;
    assert.ok(again.claim('10.0.0.1'), 'the place given back is taken again');
  });

  it('0 is no limit', () => {
    const limits = new ConnectionLimits({ maxConnections: 0, maxPerAddress: 0 });
    for (let i = 0; i < 1000; i++) assert.ok(limits.admit()?.claim('10.0.0.1'));
    assert.deepEqual([limits.connections, limits.busiestAddress()], [1000, 1000]);
  });

  it('an IPv4-mapped IPv6 address counts as the IPv4 address; an IPv6 one by its /64, in any spelling', () => {
    assert.equal(clientAddress('::ffff:198.51.100.7'), '198.51.100.7');
    assert.equal(clientAddress('::FFFF:c633:6407'), '198.51.100.7');
    assert.equal(clientAddress('0:0:0:0:0:ffff:c633:6407'), '198.51.100.7');
    assert.equal(clientAddress('2001:DB8:0::1'), '2001:db8:0:0::/64');
    assert.equal(clientAddress('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(clientAddress('2001:db8:1:2::ffff:7'), '2001:db8:1:2::/64', 'the interface part goes, whatever it is');
    assert.equal(clientAddress('2001:db8:1::'), '2001:db8:1:0::/64');
    assert.equal(clientAddress('64:ff9b::198.51.100.7'), '64:ff9b:0:0::/64');
    assert.equal(clientAddress('::1'), '0:0:0:0::/64');
    assert.equal(clientAddress('198.51.100.7'), '198.51.100.7');
    const limits = new ConnectionLimits({ maxConnections: 0, maxPerAddress: 1 });
    assert.ok(limits.admit()!.claim('198.51.100.7'));
    assert.equal(limits.admit()!.claim('::ffff:198.51.100.7'), false);
    assert.ok(limits.admit()!.claim('2001:db8::1'));
    assert.equal(limits.admit()!.claim('2001:DB8::0:1'), false);
    assert.equal(limits.admit()!.claim('2001:db8::2'), false, 'another address of the same /64');
    assert.ok(limits.admit()!.claim('2001:db8:0:1::1'), 'another /64');
  });

  it('random accepts, claims and releases (each any number of times): counts match the live slots and never go below zero', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('admit' as const) }),
      fc.record({
        kind: fc.constant('claim' as const),
        slot: fc.nat(),
        address: fc.constantFrom('10.0.0.1', '::ffff:10.0.0.1', '10.0.0.2', '::1'),
      }),
      fc.record({ kind: fc.constant('release' as const), slot: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.nat(5), fc.nat(3), fc.array(op, { maxLength: 80 }), (maxConnections, maxPerAddress, ops) => {
        const limits = new ConnectionLimits({ maxConnections, maxPerAddress });
        const slots: { slot: ConnectionSlot; address?: string; live: boolean }[] = [];
        for (const o of ops) {
          if (o.kind === 'admit') {
            const live = slots.filter((s) => s.live).length;
            const slot = limits.admit();
            assert.equal(slot === undefined, maxConnections > 0 && live >= maxConnections);
            if (slot) slots.push({ slot, live: true });
            continue;
          }
          const s = slots[o.slot % Math.max(1, slots.length)];
          if (!s) continue;
          if (o.kind === 'release') {
            s.slot.release();
            s.live = false;
          } else {
            const key = clientAddress(o.address);
            const before = slots.filter((x) => x.live && x.address === key).length;
            const claimed = s.slot.claim(o.address);
            if (s.live && s.address === undefined) {
              assert.equal(claimed, maxPerAddress === 0 || before < maxPerAddress);
              if (claimed) s.address = key;
            }
          }
          const live = slots.filter((x) => x.live);
          const byAddress = new Map<string, number>();
          for (const x of live) if (x.address) byAddress.set(x.address, (byAddress.get(x.address) ?? 0) + 1);
          assert.equal(limits.connections, live.length);
          assert.equal(limits.addresses, byAddress.size);
          assert.equal(limits.busiestAddress(), Math.max(0, ...byAddress.values()));
          if (maxConnections > 0) assert.ok(limits.connections <= maxConnections);
          if (maxPerAddress > 0) assert.ok(limits.busiestAddress() <= maxPerAddress);
        }
        for (const s of slots) s.slot.release();
        assert.deepEqual([limits.connections, limits.addresses, limits.busiestAddress()], [0, 0, 0]);
      }),
      { numRuns: 500 },
    );
  });
});
