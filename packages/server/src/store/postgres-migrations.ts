/**
 * Versioned schema of the PostgreSQL store: the same design as SQLite (sqlite-migrations.ts), with
 * BIGINT ids. postgres.ts runs the steps not yet recorded in `schema_migrations`, in one
 * transaction holding `pg_advisory_xact_lock`, so nodes starting at once against an empty
 * database wait for the first one and then find the work done. Never edit a released step.
 *
 * Bodies: `msg` BYTEA plus `msg_bin` (false = the bytes are the UTF-8 of a str body).
 *
 * ---------------------------------------------------------------------------------------------
 * Migration path to a time-partitioned messages table (when one table is too large to vacuum,
 * index and expire comfortably; DESIGN.md "Scale"):
 *
 * 1. New parent table `messages_p (… same columns …) PARTITION BY RANGE (mtime)`, one partition
 *    per day or week (created ahead of time by the retention sweep, plus a DEFAULT partition).
 * 2. Keys: every unique constraint of a partitioned table must contain the partition key, so
 *    PRIMARY KEY (id) becomes PRIMARY KEY (id, mtime) and the dedupe index becomes
 *    (pid, kind, from_id, to_id, mid, mtime) — no longer globally unique. Dedupe stays correct
 *    because appends are serialized by the `counters` row lock (postgres.ts): the existence check
 *    and the insert happen under that lock, so the check alone is enough. The unique index is kept
 *    only per partition (or replaced by a small unpartitioned `message_keys` table
 *    (pid, kind, from_id, to_id, mid) → (id, mtime) if a global guarantee is wanted).
 * 3. Indexes are declared on the parent and created on every partition: messages_history
 *    (pid, kind, conv_lo, conv_hi, id), messages_inbox (pid, to_id, mtime) WHERE kind = 1, messages_mtime
 *    (mtime, id). History keeps its id-range scan; to prune partitions it also passes the mtime
 *    bounds it already derives (begin/end, and the mtime of the lastid cursor, since mtime never
 *    decreases with id). Deep history pages then touch one or two partitions.
 * 4. Retention by age becomes `ALTER TABLE messages_p DETACH PARTITION … CONCURRENTLY` + DROP
 *    (no row-by-row DELETE, no bloat); per-conversation limits still delete rows.
 * 5. Cut-over as a new numbered step: create messages_p and its partitions, copy old rows in id
 *    batches (or attach the old table as the partition of all past mtimes after adding a CHECK
 *    constraint on its mtime range, which avoids the copy), then swap names in one transaction.
 * ---------------------------------------------------------------------------------------------
 */
export interface PostgresMigration {
  version: number;
  name: string;
  sql: string;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  last_id BIGINT NOT NULL,
  last_mtime BIGINT NOT NULL
);
INSERT INTO counters (name, last_id, last_mtime) VALUES ('messages', 0, 0);

CREATE TABLE messages (
  id BIGINT PRIMARY KEY,
  pid INTEGER NOT NULL,
  kind SMALLINT NOT NULL,
  conv_lo BIGINT NOT NULL,
  conv_hi BIGINT NOT NULL,
  from_id BIGINT NOT NULL,
  to_id BIGINT NOT NULL,
  mid BIGINT NOT NULL,
  mtype INTEGER NOT NULL,
  msg BYTEA NOT NULL,
  msg_bin BOOLEAN NOT NULL,
  attrs TEXT NOT NULL,
  mtime BIGINT NOT NULL,
  deleted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX messages_history ON messages (pid, kind, conv_lo, conv_hi, id);
CREATE UNIQUE INDEX messages_key ON messages (pid, kind, from_id, to_id, mid);
CREATE INDEX messages_inbox ON messages (pid, to_id, mtime) WHERE kind = 1;
CREATE INDEX messages_mtime ON messages (mtime, id);

CREATE TABLE p2p_sessions (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  peer BIGINT NOT NULL,
  last_id BIGINT NOT NULL,
  PRIMARY KEY (pid, uid, peer)
);

CREATE TABLE unread_baselines (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  logout_time BIGINT,
  clear_time BIGINT,
  PRIMARY KEY (pid, uid)
);

CREATE TABLE tokens (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  token TEXT NOT NULL,
  PRIMARY KEY (pid, uid)
);

CREATE TABLE group_members (
  pid INTEGER NOT NULL,
  gid BIGINT NOT NULL,
  uid BIGINT NOT NULL,
  PRIMARY KEY (pid, gid, uid)
);
CREATE INDEX group_members_user ON group_members (pid, uid, gid);

CREATE TABLE room_members (
  pid INTEGER NOT NULL,
  rid BIGINT NOT NULL,
  uid BIGINT NOT NULL,
  PRIMARY KEY (pid, rid, uid)
);
CREATE INDEX room_members_user ON room_members (pid, uid, rid);

CREATE TABLE bans (
  pid INTEGER NOT NULL,
  scope TEXT NOT NULL,
  uid BIGINT NOT NULL,
  target BIGINT NOT NULL,
  until BIGINT,
  PRIMARY KEY (pid, scope, uid, target)
);

CREATE TABLE project_blacks (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  until BIGINT,
  PRIMARY KEY (pid, uid)
);

CREATE TABLE friends (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  friend BIGINT NOT NULL,
  PRIMARY KEY (pid, uid, friend)
);

CREATE TABLE blacks (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  black BIGINT NOT NULL,
  PRIMARY KEY (pid, uid, black)
);
CREATE INDEX blacks_blocked ON blacks (pid, black, uid);

CREATE TABLE infos (
  pid INTEGER NOT NULL,
  kind TEXT NOT NULL,
  id BIGINT NOT NULL,
  oinfo TEXT NOT NULL,
  pinfo TEXT NOT NULL,
  PRIMARY KEY (pid, kind, id)
);

CREATE TABLE user_data (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  key TEXT NOT NULL,
  val TEXT NOT NULL,
  PRIMARY KEY (pid, uid, key)
);
`,
  },
  {
    version: 2,
    name: 'room_members.joined_at: the end of a presence leaves only the rooms joined before it',
    // As SQLite's step 6.
    sql: `
ALTER TABLE room_members ADD COLUMN joined_at BIGINT NOT NULL DEFAULT 0;
`,
  },
  {
    version: 3,
    name: 'group_members.joined_at: a group message counts as unread only for those in the group when it was sent',
    // As SQLite's step 7.
    sql: `
ALTER TABLE group_members ADD COLUMN joined_at BIGINT NOT NULL DEFAULT 0;
`,
  },
  {
    version: 4,
    name: 'presence_ends: grace periods outlive a restart',
    // As SQLite's step 8.
    sql: `
CREATE TABLE presence_ends (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  ended_at BIGINT NOT NULL,
  deadline BIGINT NOT NULL,
  PRIMARY KEY (pid, uid)
);
CREATE INDEX presence_ends_deadline ON presence_ends (deadline);
`,
  },
  {
    version: 5,
    name: 'nodes, node_presences: the presences of a node that died without a stop end',
    // As SQLite's step 10.
    sql: `
CREATE TABLE nodes (
  node TEXT PRIMARY KEY,
  seen_at BIGINT NOT NULL,
  mark BIGINT NOT NULL
);
CREATE TABLE node_presences (
  node TEXT NOT NULL,
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  ended_at BIGINT,
  PRIMARY KEY (node, pid, uid)
);
CREATE INDEX node_presences_user ON node_presences (pid, uid);
`,
  },
  {
    version: 6,
    name: 'kickouts: server-API kickouts, for the nodes cut off from the bus when one was published',
    // As SQLite's step 11.
    sql: `
CREATE TABLE kickouts (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  at BIGINT NOT NULL,
  endpoint TEXT
);
CREATE INDEX kickouts_at ON kickouts (at);
`,
  },
  {
    version: 7,
    name: 'presences: a claim per user that orders the login and logout of a presence across nodes',
    // As SQLite's step 13.
    sql: `
CREATE TABLE presences (
  pid INTEGER NOT NULL,
  uid BIGINT NOT NULL,
  version BIGINT NOT NULL,
  began BIGINT NOT NULL,
  live BOOLEAN NOT NULL,
  PRIMARY KEY (pid, uid)
);
INSERT INTO presences (pid, uid, version, began, live)
  SELECT pid, uid, 1, 1, true FROM node_presences UNION SELECT pid, uid, 1, 1, true FROM presence_ends;
`,
  },
];
