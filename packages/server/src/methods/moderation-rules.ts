/**
 * Ban arguments (server-api.md §4 "Bans and project blacklist"): an absent or ≤ 0 gid/rid means
 * every group/room (store target 0n); `btime` is a duration in seconds from now, ≤ 0 = permanent.
 */
export const banTarget = (id: bigint | undefined): bigint => (id === undefined || id <= 0n ? 0n : id);

export const banUntil = (btime: number, now = Date.now()): bigint | undefined =>
  btime > 0 ? BigInt(now) + BigInt(btime) * 1000n : undefined;
