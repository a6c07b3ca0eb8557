/**
 * Compile-time tests of the public API: each `expectType<...>()` line fails `tsc` (npm run
 * typecheck / npx tsc -p tsconfig.json --noEmit) when a public type drifts. `@ts-expect-error`
 * lines fail when something that must not compile starts compiling. The runtime test is trivial.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readmeExampleErrors } from '../../../test/readme/compile-examples.js';
import type {
  HistoryMessage,
  HistoryPage,
  Id,
  InfoPair,
  MessageBody,
  MessageNum,
  PushEvent,
  PushGroupMessage,
  PushP2PMessage,
  PushRoomMessage,
  RetrievedMessage,
  RTMServerClient,
  RTMServerClientOptions,
  SendResult,
  ServerClientEvents,
  SetListenOptions,
} from '../src/index.js';
import { MessageType, RTMError, RtmError } from '../src/index.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

type C = RTMServerClient;
type Result<M extends keyof C> = C[M] extends (...args: never[]) => Promise<infer R> ? R : never;
type Params<M extends keyof C> = C[M] extends (...args: infer P) => unknown ? P : never;

// ids
expectType<Equal<Id, bigint | number>>();
expectType<Equal<MessageBody, string | Uint8Array>>();

// results: ids are bigint everywhere
expectType<Equal<Result<'sendMessage'>, SendResult>>();
expectType<Equal<SendResult, { mid: bigint; mtime: bigint }>>();
expectType<Equal<Result<'getToken'>, string>>();
expectType<Equal<Result<'getOnlineUsers'>, bigint[]>>();
expectType<Equal<Result<'getGroupMembers'>, bigint[]>>();
expectType<Equal<Result<'isFriends'>, bigint[]>>();
expectType<Equal<Result<'isGroupMember'>, boolean>>();
expectType<Equal<Result<'getRoomCount'>, Map<bigint, number>>>();
expectType<Equal<Result<'getUserOpenInfo'>, Map<bigint, string>>>();
expectType<Equal<Result<'getUserInfo'>, InfoPair>>();
expectType<Equal<Result<'dataGet'>, string | undefined>>();
expectType<Equal<Result<'getMessageNum'>, MessageNum>>();
expectType<Equal<Result<'getMessage'>, RetrievedMessage>>();
expectType<Equal<Result<'getP2PMessageInfo'>, RetrievedMessage>>();
expectType<Equal<Result<'deleteMessage'>, void>>();
expectType<Equal<Result<'getP2PMessage'>, HistoryPage>>();
expectType<Equal<Result<'getBroadcastMessage'>, HistoryPage>>();
expectType<Equal<HistoryPage['messages'], HistoryMessage[]>>();
expectType<Equal<HistoryPage['lastid'], bigint>>();
expectType<
  Equal<
    HistoryMessage,
    {
      id: bigint;
      fromUid: bigint;
      toId: bigint;
      mtype: number;
      mid: bigint;
      deleted: boolean;
      message: MessageBody;
      attrs: string;
      mtime: bigint;
    }
  >
>();
expectType<Equal<RetrievedMessage['id'], bigint>>();

// parameter order follows the Python SDK
expectType<Equal<Params<'sendMessage'>[0], number>>(); // mtype
expectType<Equal<Params<'sendMessage'>[1], Id>>(); // fromUid
expectType<Equal<Params<'sendMessage'>[2], Id>>(); // toUid
expectType<Equal<Params<'sendMessage'>[3], MessageBody>>();
expectType<Equal<Params<'sendMessages'>[2], readonly Id[]>>();
expectType<Equal<Params<'getGroupMessage'>[2], boolean>>(); // desc
expectType<Equal<Params<'getP2PMessage'>[1], Id>>(); // ouid
expectType<Equal<Params<'deleteMessage'>[3], MessageType>>();
expectType<Equal<MessageType, 1 | 2 | 3 | 4>>();
expectType<Equal<typeof MessageType.BROADCAST, 4>>();
expectType<Equal<Params<'kickout'>[1], string | undefined>>();
expectType<Equal<Params<'sendBroadcastMessage'>, Params<'broadcastMessage'>>>();
expectType<Equal<Result<'sendBroadcastMessage'>, SendResult>>();

// RTMError is the same class as RtmError, as a value and as a type
expectType<Equal<typeof RTMError, typeof RtmError>>();
expectType<Equal<RTMError, RtmError>>();

// events
expectType<Equal<ServerClientEvents['message'], PushP2PMessage>>();
expectType<Equal<ServerClientEvents['groupMessage'], PushGroupMessage>>();
expectType<Equal<ServerClientEvents['roomMessage'], PushRoomMessage>>();
expectType<Equal<ServerClientEvents['event'], PushEvent>>();
expectType<Equal<ServerClientEvents['error'], Error>>();
expectType<Equal<PushP2PMessage['mid'], bigint>>();
expectType<Equal<PushGroupMessage['gid'], bigint>>();
expectType<Equal<PushEvent['uid'], bigint>>();
expectType<
  Equal<keyof ServerClientEvents, 'connected' | 'closed' | 'error' | 'ping' | 'message' | 'groupMessage' | 'roomMessage' | 'event'>
>();
expectType<Equal<ReturnType<C['on']>, () => void>>();

// options
expectType<Equal<RTMServerClientOptions['pid'], number>>();
expectType<Equal<RTMServerClientOptions['questTimeoutMs'], number | undefined>>();

function compileOnly(client: RTMServerClient): void {
  client.on('message', (_m) => {
    expectType<Equal<typeof _m, PushP2PMessage>>();
  });
  client.on('closed', (_info) => {
    expectType<Equal<typeof _info.willReconnect, boolean>>();
  });
  // @ts-expect-error unknown event name
  client.on('pushmsg', () => {});
  // @ts-expect-error listener payload type must match the event
  client.on('groupMessage', (m: PushP2PMessage) => m);
  // @ts-expect-error ids are not strings
  void client.getToken('1001');
  // @ts-expect-error the list form and the all form do not mix
  const mixed: SetListenOptions = { p2p: true, gids: [1] };
  // @ts-expect-error events is a boolean in the all form
  const wrongEvents: SetListenOptions = { p2p: true, events: ['login'] };
  const lists: SetListenOptions = { gids: [1, 2n], events: ['login'] };
  const all: SetListenOptions = { p2p: true, events: true };
  void [mixed, wrongEvents, lists, all];
  // @ts-expect-error getMessageNum only counts groups (2) and rooms (3)
  void client.getMessageNum(1, 1);
  void client.sendMessage(30, 1n, 2, 'x', '', { mid: 0, timeoutMs: 5 });
  void client.getGroupMessage(1, 2, true, 10, { lastid: 1n, begin: 0, end: 10n, mtypes: [30] });
}
void compileOnly;

test('public API types (checked by tsc)', () => {});

test('the README examples compile against the exported API', () => {
  assert.deepEqual(readmeExampleErrors(new URL('../README.md', import.meta.url)), []);
});
