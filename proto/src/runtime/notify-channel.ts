/**
 * The Redis contract between metaservers (which publish) and notifyservers (which fan out): the
 * channel a commit's {namespaceId, cursor, at} goes to, and the key holding each namespace's
 * latest cursor.
 */
export const NAMESPACE_CHANNEL = "satchel:namespace-advanced";
export const latestCursorKey = (namespaceId: bigint) => `satchel:cursor:${namespaceId}`;

/** One advance as published: ids as decimal strings, `at` the publish time in ms since the epoch. */
export interface NamespaceAdvance {
  namespaceId: string;
  cursor: string;
  at?: number;
}
