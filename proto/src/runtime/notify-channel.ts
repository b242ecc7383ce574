/**
 * The Redis contract between metaservers (which publish) and notifyservers (which fan out): the
 * channel a commit's {namespaceId, cursor, at} goes to, and the key holding each namespace's
 * latest cursor.
 */
export const NAMESPACE_CHANNEL = "satchel:namespace-advanced";
export const latestCursorKey = (namespaceId: bigint) => `satchel:cursor:${namespaceId}`;

/**
 * Where a metaserver says a user's membership of a namespace ended (removed, left, unshared):
 * notifyservers stop telling that user's streams about it. A hint like the advances (a lost one is
 * caught by the notifyservers' periodic recheck through MetaAdminService.ListMemberships).
 */
export const MEMBERSHIP_CHANNEL = "satchel:membership-ended";

/** One ended membership as published: ids as decimal strings. */
export interface MembershipEnded {
  userId: string;
  namespaceId: string;
}

/** One advance as published: ids as decimal strings, `at` the publish time in ms since the epoch. */
export interface NamespaceAdvance {
  namespaceId: string;
  cursor: string;
  at?: number;
}
