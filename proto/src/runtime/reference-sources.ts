/**
 * The contract between the metaserver's reference relays (which send) and the blockserver's
 * garbage collector (which waits for them): each metadata shard's outbox is one source of block
 * reference changes, named after the shard. The blockserver reads the same shard map, so it knows
 * every source that must have delivered before a block at zero may go.
 */
export const referenceSourceOf = (shardId: number): string => `meta-shard-${shardId}`;
