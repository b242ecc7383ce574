/** What a pooled SQL connection offers for transactions (mysql2's PoolConnection fits). */
export interface TransactionalConnection {
  beginTransaction(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  release(): void;
}

/**
 * Runs fn in one transaction on a connection from the pool, rolling back on any error and always
 * returning the connection. Shared by the services' stores; it needs no database driver itself.
 */
export async function inTransaction<C extends TransactionalConnection, T>(
  pool: { getConnection(): Promise<C> },
  fn: (conn: C) => Promise<T>,
): Promise<T> {
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    const result = await fn(conn);
    await conn.commit();
    return result;
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    throw err;
  } finally {
    conn.release();
  }
}
