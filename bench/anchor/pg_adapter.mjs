// A PostgreSQL adapter for oidc-provider, for the durable anchor (ANCHOR_DATABASE_URL).
//
// oidc-provider ships only an in-memory adapter, for development; a deployment brings its
// own (its documentation points to example adapters). This one keeps every model in one
// table, as those examples do: the payload as JSON, with the columns its lookups need
// (grant, user code, session uid) and the expiry. Each call is one statement on a pooled
// connection, committed as PostgreSQL commits by default (synchronous_commit on): what a
// client was told is on disk, as with Ostiary.
import pg from 'pg';

const pool = new pg.Pool({
  connectionString: process.env.ANCHOR_DATABASE_URL,
  max: Number(process.env.ANCHOR_POOL_SIZE || 5),
});

export async function createTable() {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS oidc_models (
      type text NOT NULL,
      id text NOT NULL,
      payload jsonb NOT NULL,
      grant_id text,
      user_code text,
      uid text,
      expires_at timestamptz,
      consumed_at timestamptz,
      PRIMARY KEY (type, id)
    )`);
  await pool.query('CREATE INDEX IF NOT EXISTS oidc_models_grant_id ON oidc_models (grant_id)');
  await pool.query('CREATE INDEX IF NOT EXISTS oidc_models_user_code ON oidc_models (user_code)');
  await pool.query('CREATE INDEX IF NOT EXISTS oidc_models_uid ON oidc_models (uid)');
}

export async function end() {
  await pool.end();
}

function loaded(rows) {
  if (rows.length === 0) return undefined;
  const [{ payload, consumed_at: consumedAt }] = rows;
  return consumedAt ? { ...payload, consumed: Math.floor(consumedAt.getTime() / 1000) } : payload;
}

const LIVE = '(expires_at IS NULL OR expires_at > now())';

export default class PostgresAdapter {
  constructor(name) {
    this.type = name;
  }

  async upsert(id, payload, expiresIn) {
    await pool.query(
      `INSERT INTO oidc_models (type, id, payload, grant_id, user_code, uid, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
       ON CONFLICT (type, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [this.type, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null,
        expiresIn ?? null],
    );
  }

  // the live model of this type whose `column` (a name of ours, never input) holds `value`
  async #findBy(column, value) {
    const { rows } = await pool.query(
      `SELECT payload, consumed_at FROM oidc_models WHERE type = $1 AND ${column} = $2 AND ${LIVE}`,
      [this.type, value],
    );
    return loaded(rows);
  }

  async find(id) {
    return this.#findBy('id', id);
  }

  async findByUserCode(userCode) {
    return this.#findBy('user_code', userCode);
  }

  async findByUid(uid) {
    return this.#findBy('uid', uid);
  }

  async consume(id) {
    await pool.query('UPDATE oidc_models SET consumed_at = now() WHERE type = $1 AND id = $2', [this.type, id]);
  }

  async destroy(id) {
    await pool.query('DELETE FROM oidc_models WHERE type = $1 AND id = $2', [this.type, id]);
  }

  async revokeByGrantId(grantId) {
    await pool.query('DELETE FROM oidc_models WHERE grant_id = $1', [grantId]);
  }
}
