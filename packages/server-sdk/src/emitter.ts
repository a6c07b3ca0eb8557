/** A listener of one event. */
export type Listener<T> = (payload: T) => void;

/** What `once()` registers: it remembers the listener it wraps, so that `off()` can find it. */
type OnceWrapper = Listener<never> & { readonly wrapped?: Listener<never> };

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/**
 * A minimal typed event emitter. Listeners run synchronously in registration order; one that
 * throws, or an async one whose promise rejects, is reported to `onListenerError` and the others
 * still run. Unlike node's EventEmitter, an 'error' event without listeners is simply dropped (it
 * is also logged by the client).
 */
export class TypedEmitter<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly onListenerError: (err: unknown, event: keyof Events) => void = () => {}) {}

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener called at most once; returns a function that removes it. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const wrapper: Listener<Events[K]> = (payload) => {
      off();
      // Returned, so that emit() sees the promise of an async listener.
      return listener(payload);
    };
    const off = this.on(event, Object.assign(wrapper, { wrapped: listener }));
    return off;
  }

  /** Removes `listener` from `event`, whether it was added with `on()` or `once()`. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const l of set as Set<OnceWrapper>) if (l === listener || l.wrapped === listener) set.delete(l);
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
        // An async listener that rejects would be an unhandled rejection, which ends a Node process:
        // it is reported like one that throws.
        if (isThenable(result)) result.then(undefined, (err: unknown) => this.onListenerError(err, event));
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
  }
}
