import { schema as s, type Field, type Infer, type Payload, type Schema } from '@rtm/fpnn';
import type { Services } from '../services/index.js';
import type { ServerConnection } from '../services/listen.js';
import type { ClientConnection } from '../services/presence.js';

/** What a server-gate handler knows: the signed project, and the connection (absent over HTTP). */
export interface ServerContext {
  readonly pid: number;
  readonly services: Services;
  readonly conn: ServerConnection | undefined;
}

/** What a client-gate handler knows: the logged-in user of this connection. */
export interface ClientContext {
  readonly pid: number;
  readonly uid: bigint;
  readonly services: Services;
  readonly conn: ClientConnection;
}

/** One method: its wire shape (validated before `handle` runs) and its handler. */
export interface MethodDef<Ctx> {
  readonly schema: Schema;
  handle(ctx: Ctx, req: never): Payload | Promise<Payload>;
}

export type MethodTable<Ctx> = Readonly<Record<string, MethodDef<Ctx>>>;

export function define<Ctx, S extends Schema>(schema: S, handle: (ctx: Ctx, req: Infer<S>) => Payload | Promise<Payload>): MethodDef<Ctx> {
  return { schema, handle: handle as (ctx: Ctx, req: never) => Payload | Promise<Payload> };
}

export const serverMethod = <S extends Schema>(
  schema: S,
  handle: (ctx: ServerContext, req: Infer<S>) => Payload | Promise<Payload>,
): MethodDef<ServerContext> => define<ServerContext, S>(schema, handle);

export const clientMethod = <S extends Schema>(
  schema: S,
  handle: (ctx: ClientContext, req: Infer<S>) => Payload | Promise<Payload>,
): MethodDef<ClientContext> => define<ClientContext, S>(schema, handle);

const intList = s.list(s.int);

/**
 * An `mtypes` filter, canonical: the distinct types 1 – 127 it names, sorted. The store prepares
 * one statement per filter length (one `?` per type), so lists of every length from one client
 * must not make one statement each (memory grew without bound). Types no message can have are
 * dropped; a list of nothing but those matches nothing ([0]), as it did.
 */
const mtypes: Field<number[]> = {
  optional: false,
  describe: 'a list of mtypes',
  read(v, k) {
    const asked = intList.read(v, k);
    if (asked.length === 0) return asked;
    const kept = [...new Set(asked.filter((t) => t >= 1 && t <= 127))].sort((a, b) => a - b);
    return kept.length > 0 ? kept : [0];
  },
};

const uid = s.positiveId('uid');
const gid = s.positiveId('gid');
const rid = s.positiveId('rid');

/**
 * Field shorthands used by every method file. A key naming a user, group or room is `uid` / `gid`
 * / `rid` (or a list of them): > 0, else 200034 before the handler runs, so nothing is stored or
 * pushed for an id no one can log in as. `id` is for the other int64 keys: mids, times, cursors
 * (≤ 0 = none), and the few ids the spec gives a meaning at ≤ 0 (a ban's gid / rid: all).
 */
export const f = {
  mtypes,
  id: s.id,
  uid,
  gid,
  rid,
  uids: s.list(uid),
  gids: s.list(gid),
  rids: s.list(rid),
  uidSet: s.setOf(uid),
  gidSet: s.setOf(gid),
  ridSet: s.setOf(rid),
  strSet: s.setOf(s.str),
  int: s.int,
  str: s.str,
  body: s.body,
  bool: s.bool,
  ints: s.list(s.int),
  strs: s.list(s.str),
  strMap: s.strMap,
  opt: s.optional,
};

/** Runs a method: validate the payload into a typed request, then handle it. */
export function invoke<Ctx>(def: MethodDef<Ctx>, ctx: Ctx, payload: Payload): Payload | Promise<Payload> {
  const req = s.parse(def.schema, payload);
  return def.handle(ctx, req as never);
}
