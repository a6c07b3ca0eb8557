/**
 * Versioned schema of the SQLite store. Each step runs once, in order, inside the same
 * `BEGIN IMMEDIATE` transaction as the `schema_migrations` row that records it (sqlite.ts).
 * Never edit a released step: append a new one.
 *
 * Design (DESIGN.md "Storage"):
 * - `messages.id` is the rowid, assigned by the store from the newest message and the newest
 *   `seconds` row (`time_index` until step 5; not by SQLite's max+1 alone, which would reuse the
 *   ids of deleted newest rows; `counters` until step 3), so ids only ever grow and `mtime` never
 *   decreases with `id`. History turns `begin`/`end` into id bounds through `seconds` and then
 *   reads one id range of `messages_history` (filtering the edge seconds by mtime): a range scan
 *   at any depth.
 * - Conversation key: p2p = (min uid, max uid), group/room = (gid/rid, 0), broadcast = (0, 0).
 * - `msg` has no type affinity (declared BLOB): a str body is stored as TEXT, a bin body as BLOB,
 *   and read back as the same kind; a str body whose bytes are not UTF-8 as a BLOB with
 *   `str_bytes` = 1 (step 14).
 * - Ids are INTEGER (signed 64-bit); the store reads them with safe integers (bigint).
 * - Write cost per message is kept low: two indexes on `messages` (history, and the unique key
 *   led by the clock-derived mid so that it grows at one edge: step 4); time
 *   windows and the id counter go through `seconds` (one row per second, written by its first
 *   commit and completed by a later second's), conversation lists and p2p unread through
 *   `p2p_pairs` (one row per pair, rewritten at most once per second of the pair's activity):
 *   see steps 2, 3 and 5, and sqlite-appender.ts.
 */
export interface SqliteMigration {
  version: number;
  name: string;
  sql: string;
}

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  last_id INTEGER NOT NULL,
  last_mtime INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, last_id, last_mtime) VALUES ('messages', 0, 0);

CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  pid INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  conv_lo INTEGER NOT NULL,
  conv_hi INTEGER NOT NULL,
  from_id INTEGER NOT NULL,
  to_id INTEGER NOT NULL,
  mid INTEGER NOT NULL,
  mtype INTEGER NOT NULL,
  msg BLOB NOT NULL,
  attrs TEXT NOT NULL,
  mtime INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_history ON messages (pid, kind, conv_lo, conv_hi, id);
CREATE UNIQUE INDEX messages_key ON messages (pid, kind, from_id, to_id, mid);
CREATE INDEX messages_inbox ON messages (pid, to_id, mtime) WHERE kind = 1;
CREATE INDEX messages_mtime ON messages (mtime, id);

CREATE TABLE p2p_sessions (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  peer INTEGER NOT NULL,
  last_id INTEGER NOT NULL,
  PRIMARY KEY (pid, uid, peer)
) WITHOUT ROWID;

CREATE TABLE unread_baselines (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  logout_time INTEGER,
  clear_time INTEGER,
  PRIMARY KEY (pid, uid)
) WITHOUT ROWID;

CREATE TABLE tokens (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  token TEXT NOT NULL,
  PRIMARY KEY (pid, uid)
) WITHOUT ROWID;

CREATE TABLE group_members (
  pid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  PRIMARY KEY (pid, gid, uid)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (pid, uid, gid);

CREATE TABLE room_members (
  pid INTEGER NOT NULL,
  rid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  PRIMARY KEY (pid, rid, uid)
) WITHOUT ROWID;
CREATE INDEX room_members_user ON room_members (pid, uid, rid);

CREATE TABLE bans (
  pid INTEGER NOT NULL,
  scope TEXT NOT NULL,
  uid INTEGER NOT NULL,
  target INTEGER NOT NULL,
  until INTEGER,
  PRIMARY KEY (pid, scope, uid, target)
) WITHOUT ROWID;

CREATE TABLE project_blacks (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  until INTEGER,
  PRIMARY KEY (pid, uid)
) WITHOUT ROWID;

CREATE TABLE friends (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  friend INTEGER NOT NULL,
  PRIMARY KEY (pid, uid, friend)
) WITHOUT ROWID;

CREATE TABLE blacks (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  black INTEGER NOT NULL,
  PRIMARY KEY (pid, uid, black)
) WITHOUT ROWID;

CREATE TABLE infos (
  pid INTEGER NOT NULL,
  kind TEXT NOT NULL,
  id INTEGER NOT NULL,
  oinfo TEXT NOT NULL,
  pinfo TEXT NOT NULL,
  PRIMARY KEY (pid, kind, id)
) WITHOUT ROWID;

CREATE TABLE user_data (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  key TEXT NOT NULL,
  val TEXT NOT NULL,
  PRIMARY KEY (pid, uid, key)
) WITHOUT ROWID;
`,
  },
  {
    version: 2,
    name: 'lighter writes: per-second time index, one conversation-list row per p2p pair',
    // Each message used to write 2 more b-trees than the raw ceiling: a (mtime, id) index entry and
    // two p2p_sessions rows. Now: one time_index row per second (written once per group commit)
    // maps time to ids — exact enough because mtime never decreases with id — and one p2p_pairs
    // row per conversation carries both sides' list entries (a hidden flag per side).
    sql: `
CREATE TABLE time_index (
  sec INTEGER PRIMARY KEY,
  last_id INTEGER NOT NULL
);
INSERT INTO time_index (sec, last_id) SELECT mtime / 1000, MAX(id) FROM messages GROUP BY mtime / 1000;
DROP INDEX messages_mtime;

CREATE TABLE p2p_pairs (
  pid INTEGER NOT NULL,
  lo INTEGER NOT NULL,
  hi INTEGER NOT NULL,
  last_id INTEGER NOT NULL,
  hidden_lo INTEGER NOT NULL DEFAULT 0,
  hidden_hi INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (pid, lo, hi)
) WITHOUT ROWID;
CREATE INDEX p2p_pairs_hi ON p2p_pairs (pid, hi, lo);
INSERT INTO p2p_pairs (pid, lo, hi, last_id, hidden_lo, hidden_hi)
  SELECT pid, MIN(uid, peer), MAX(uid, peer), MAX(last_id),
         CASE WHEN SUM(uid = MIN(uid, peer)) > 0 THEN 0 ELSE 1 END,
         CASE WHEN SUM(uid = MAX(uid, peer)) > 0 THEN 0 ELSE 1 END
  FROM p2p_sessions GROUP BY pid, MIN(uid, peer), MAX(uid, peer);
DROP TABLE p2p_sessions;
`,
  },
  {
    version: 3,
    name: 'fewer pages per commit: id counter in time_index, p2p unread through p2p_pairs',
    // A commit of one p2p message wrote 7 b-tree pages (WAL frames), two of them for bookkeeping
    // that another page already holds: the counters row (time_index's newest row carries the same
    // last id, and now the last mtime too) and the messages_inbox entry (p2p unread now walks the
    // user's p2p_pairs rows changed since the baseline and counts in messages_history). Measured
    // on a commit of one message: 106 → 74 µs of CPU.
    sql: `
ALTER TABLE time_index ADD COLUMN last_mtime INTEGER NOT NULL DEFAULT 0;
UPDATE time_index SET last_mtime = sec * 1000;
INSERT INTO time_index (sec, last_id, last_mtime)
  SELECT last_mtime / 1000, last_id, last_mtime FROM counters WHERE name = 'messages' AND last_id > 0
  ON CONFLICT (sec) DO UPDATE SET last_id = MAX(last_id, excluded.last_id), last_mtime = MAX(last_mtime, excluded.last_mtime);
DROP TABLE counters;
DROP INDEX messages_inbox;
`,
  },
  {
    version: 4,
    name: 'unique message key led by mid: appends land at the right edge of the index',
    // Every SDK generates mids from the clock (spec/fpnn.md §2), so keyed by mid first the unique
    // index grows at its right edge: a commit of hundreds of messages to hundreds of conversations
    // dirties the last few leaf pages instead of one leaf per conversation (keyed by sender first).
    // Lookups give all five columns, so the column order costs them nothing.
    sql: `
DROP INDEX messages_key;
CREATE UNIQUE INDEX messages_key ON messages (pid, mid, kind, from_id, to_id);
`,
  },
  {
    version: 5,
    name: 'time_index renamed seconds: its newest row may lag behind the newest message',
    // From here on a second's row is written by its first commit and completed by the first commit
    // of a later second (sqlite-appender.ts), so the newest row may hold fewer ids than were given
    // out. A server from before this step takes its id counter from that row and would hand out
    // ids that exist, failing every append; under the new name it fails at start instead, and
    // `migrate` now refuses a schema newer than the server knows.
    sql: `
ALTER TABLE time_index RENAME TO seconds;
`,
  },
  {
    version: 6,
    name: 'room_members.joined_at: the end of a presence leaves only the rooms joined before it',
    // A user's rooms are cleared when their presence ends, a few store round trips after the last
    // session closed. A room a backend added them to meanwhile (or that a new login on another
    // node entered) was cleared with the others; now only rooms joined at or before the end go.
    // Rows from before this step (0) are all older than any presence's end.
    sql: `
ALTER TABLE room_members ADD COLUMN joined_at INTEGER NOT NULL DEFAULT 0;
`,
  },
  {
    version: 7,
    name: 'group_members.joined_at: a group message counts as unread only for those in the group when it was sent',
    // A user added to a group found every message of the group since their last logout or clear
    // counted as unread, those from before they joined too: messages that were never for them.
    // The join is an unread mark (store/message-clock.ts): the messages stored after it count.
    // Rows from before this step (0) keep counting as before.
    sql: `
ALTER TABLE group_members ADD COLUMN joined_at INTEGER NOT NULL DEFAULT 0;
`,
  },
  {
    version: 8,
    name: 'presence_ends: grace periods outlive a restart',
    // A stop ended every presence in its grace period at once: each user who came back a moment
    // later (their SDK logs in again) had left their rooms, moved their unread baseline, and
    // listeners heard a logout and a login. The stopping node now leaves them here instead.
    sql: `
CREATE TABLE presence_ends (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  ended_at INTEGER NOT NULL,
  deadline INTEGER NOT NULL,
  PRIMARY KEY (pid, uid)
) WITHOUT ROWID;
CREATE INDEX presence_ends_deadline ON presence_ends (deadline);
`,
  },
  {
    version: 9,
    name: 'unread_clock: the unread marks of one process sort before those of the next',
    // The clock of marks (store/message-clock.ts) started over at each start from the wall clock:
    // one that ran behind the last process's marks (stepped back) put new messages before earlier
    // clears. The highest mark is now recorded at close and resumed after at open.
    sql: `
CREATE TABLE unread_clock (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  high INTEGER NOT NULL
);
`,
  },
  {
    version: 10,
    name: 'nodes, node_presences: the presences of a node that died without a stop end',
    // A crash handed nothing over: a user who did not come back stayed in their rooms, was never
    // heard to log out, and kept the baseline of the logout before. Each node now records the
    // presences it holds and touches its row; a node unheard for RTM_NODE_LEASE_MS is dead, and
    // another node (or the next process) ends what it held (services/sessions.ts).
    sql: `
CREATE TABLE nodes (
  node TEXT PRIMARY KEY,
  seen_at INTEGER NOT NULL,
  mark INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE node_presences (
  node TEXT NOT NULL,
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  ended_at INTEGER,
  PRIMARY KEY (node, pid, uid)
) WITHOUT ROWID;
CREATE INDEX node_presences_user ON node_presences (pid, uid);
`,
  },
  {
    version: 11,
    name: 'kickouts: server-API kickouts, for the nodes cut off from the bus when one was published',
    // A node cut off from NATS missed the kickouts published meanwhile, and the sessions they were
    // to close stayed; it now reads them after the outage (services/resync.ts).
    sql: `
CREATE TABLE kickouts (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  at INTEGER NOT NULL,
  endpoint TEXT
);
CREATE INDEX kickouts_at ON kickouts (at);
`,
  },
  {
    version: 12,
    name: 'p2p_pairs: a row for every p2p conversation, those step 2 found no session for too',
    // p2p unread walks p2p_pairs (step 3): a conversation without a row is never counted. Step 2
    // made rows from p2p_sessions only, which held no row for a conversation both sides had
    // removed from their lists, nor for one bulk-loaded by a release before step 3 (nor did those
    // write p2p_pairs): their unread messages were counted before the upgrade and not after it.
    // The row comes hidden on both sides (in no list, as before) with the pair's newest id; the
    // pair's next message shows it again. Reads the history index once (≈ 1 s per million
    // messages, measured: a sort of the pairs as it goes); writes nothing to a store whose pairs
    // all have a row.
    sql: `
INSERT INTO p2p_pairs (pid, lo, hi, last_id, hidden_lo, hidden_hi)
  SELECT pid, conv_lo, conv_hi, MAX(id), 1, 1 FROM messages INDEXED BY messages_history WHERE kind = 1 GROUP BY pid, conv_lo, conv_hi
  ON CONFLICT (pid, lo, hi) DO NOTHING;
`,
  },
  {
    version: 13,
    name: 'presences: a claim per user that orders the login and logout of a presence across nodes',
    // Two nodes logging one user in at the same moment could both announce the login, and two
    // ending the user's last sessions at once could both log them out: each decided on what the
    // other nodes answered over the bus. A node now joins the user's presence here (the version
    // goes up) and ends it only at the version it read (services/sessions.ts). The presences going
    // on now (held by a node, or handed over at a stop) go on.
    sql: `
CREATE TABLE presences (
  pid INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  version INTEGER NOT NULL,
  began INTEGER NOT NULL,
  live INTEGER NOT NULL,
  PRIMARY KEY (pid, uid)
) WITHOUT ROWID;
INSERT INTO presences (pid, uid, version, began, live)
  SELECT pid, uid, 1, 1, 1 FROM node_presences UNION SELECT pid, uid, 1, 1, 1 FROM presence_ends;
`,
  },
  {
    version: 14,
    name: 'messages.str_bytes: a str body whose bytes are not UTF-8, kept as its bytes',
    // The Go server SDK sends binary bodies as str (string(bytes)). A TEXT value reads back through
    // a JS string, where such bytes become U+FFFD: they are kept as a BLOB, marked to be sent back
    // as a str. A column with a constant default: SQLite rewrites no row to add it.
    sql: `
ALTER TABLE messages ADD COLUMN str_bytes INTEGER NOT NULL DEFAULT 0;
`,
  },
];
