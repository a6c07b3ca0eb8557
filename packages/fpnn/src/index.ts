export * from './codes.js';
export * from './errors.js';
export * from './frame.js';
export { FrameDecoder, DecodedQuest, DecodedAnswer } from './decoder.js';
export {
  decodePayload,
  decodeFramePayload,
  encodePayload,
  encodeMsgpack,
  decodeMsgpack,
  decodeMsgpackKeeping,
  encodeQuestFrame,
  encodeAnswerFrame,
  json,
  MAX_PAYLOAD_OBJECTS,
  MAX_PAYLOAD_VALUES,
  type Payload,
} from './codec.js';
export { StrBytes, strBody, isUtf8 } from './str-bytes.js';
export * as schema from './schema.js';
export { asInt64, type Field, type IdTarget, type Infer, type Schema } from './schema.js';
export { FpnnPeer, type IncomingQuest, type PeerOptions, type QuestHandler, type QuestOptions } from './peer.js';
export { afterPendingReads, judgeAfterStall } from './stall.js';
