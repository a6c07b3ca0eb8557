import { RtmError, RtmErrorCode } from '@rtm/fpnn';

/**
 * Strings the stores keep as text (a message's attrs, user/group/room info, key-value data) may
 * not hold U+0000. PostgreSQL's `text` cannot store it, so a send with such attrs failed there as
 * 20001 'internal server error' (and rolled back the other sends of its group commit) while SQLite
 * kept it; both now refuse it alike, before anything is stored. Message bodies are bytes in both
 * stores and may hold any character.
 */
export function checkStoredText(key: string, value: string): void {
  if (value.includes('\u0000')) throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `${key} must not contain the NUL character (U+0000)`);
}
