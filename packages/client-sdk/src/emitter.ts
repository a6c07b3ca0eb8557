type Listener<T> = (payload: T) => void;

/** What `once()` registers: it remembers the listener it wraps, so that `off()` can find it. */
type OnceWrapper = Listener<never> & { readonly wrapped?: Listener<never> };

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/**
 * A small typed event emitter that runs in browsers and Node alike (no `node:events`).
 * A listener that throws, or an async one whose promise rejects, does not stop the others; the
 * error goes to `onListenerError`.
 */
export class TypedEmitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (err: unknown, event: keyof Events) => void = () => {}) {}

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return this;
  }

  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this {
    const wrapper: Listener<Events[K]> = (payload) => {
      this.off(event, wrapper);
      // Returned, so that emit() sees the promise of an async listener.
      return listener(payload);
    };
    return this.on(event, Object.assign(wrapper, { wrapped: listener }));
  }

  /** Removes `listener` from `event`, whether it was added with `on()` or `once()`. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this {
    const set = this.listeners.get(event);
    if (!set) return this;
    for (const l of set as Set<OnceWrapper>) if (l === listener || l.wrapped === listener) set.delete(l);
    return this;
  }

  /** Removes every listener of `event`, or of every event. */
  removeAllListeners(event?: keyof Events): this {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
    return this;
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        const result: unknown = (listener as Listener<Events[K]>)(payload);
        // `client.on('message', async (m) => save(m))` is the usual way to write a listener: its
        // rejection, left alone, is an unhandled rejection, which ends a Node process (and is only
        // logged by browsers). It is reported like a listener that throws.
        if (isThenable(result)) result.then(undefined, (err: unknown) => this.onListenerError(err, event));
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
  }
}
