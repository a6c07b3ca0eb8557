import type { Store } from '../../src/store/store.js';

/** A login's steps in the store that a test can hold: the token check and the room lookup. */
export type LoginStep = 'getToken' | 'userRooms';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a mixin's constructor takes what its base takes
type StoreClass = new (...args: any[]) => Store;

/**
 * `Base` (a SqliteStore or PostgresStore) whose login steps for a user can be held by the test,
 * to order two logins' steps exactly: `hold(step, uid)` makes the next such step wait for
 * `release`, and `reached` resolves when it has begun.
 */
export function withHeldLoginSteps<B extends StoreClass>(Base: B) {
  return class HoldingStore extends Base {
    readonly holds = new Map<string, { reached: () => void; released: Promise<void> }>();

    hold(step: LoginStep, uid: bigint): { reached: Promise<void>; release: () => void } {
      let reached!: () => void;
      let release!: () => void;
      const reachedP = new Promise<void>((r) => (reached = r));
      const released = new Promise<void>((r) => (release = r));
      this.holds.set(`${step}:${uid}`, { reached, released });
      return { reached: reachedP, release };
    }

    async held(step: LoginStep, uid: bigint): Promise<void> {
      const h = this.holds.get(`${step}:${uid}`);
      if (!h) return;
      this.holds.delete(`${step}:${uid}`);
      h.reached();
      await h.released;
    }

    override async getToken(pid: number, uid: bigint): Promise<string | undefined> {
      await this.held('getToken', uid);
      return super.getToken(pid, uid);
    }

    override async userRooms(pid: number, uid: bigint): Promise<bigint[]> {
      await this.held('userRooms', uid);
      return super.userRooms(pid, uid);
    }
  };
}
