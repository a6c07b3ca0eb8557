import { schema as s, type Infer, type Payload, type Schema } from '@rtm/fpnn';
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

/** Field shorthands used by every method file. */
export const f = {
  id: s.id,
  int: s.int,
  str: s.str,
  body: s.body,
  bool: s.bool,
  ids: s.list(s.id),
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
