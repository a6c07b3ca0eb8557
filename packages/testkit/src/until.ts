/**
 * Polls `condition` (every 10 ms) until it holds or `withinMs` have passed; resolves whether it
 * held. For what arrives asynchronously (a push, an answer, a close seen by the server, a node
 * joining): a fixed sleep is too short on a loaded machine (CI) and needlessly long elsewhere.
 * It does not throw: assert the condition afterwards, so that a test that times out still fails
 * with what it got.
 */
export async function until(condition: () => boolean | Promise<boolean>, withinMs = 5_000): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() >= deadline) return false;
    await new Promise<void>((resolve) => setTimeout(resolve, 10));
  }
}
