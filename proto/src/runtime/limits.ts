/** Largest block a client may send in one message. */
export const MAX_BLOCK_BYTES = 16 * 1024 * 1024;

/**
 * Largest protobuf message any Satchel server or client reads or writes: one 16 MiB block plus
 * room for its envelope (hash, framing). grpc-js defaults to 4 MiB, so every client sets this.
 */
export const MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 64 * 1024;

/**
 * HTTP/2 session memory, in MiB. Node's default (10 MB) resets streams with
 * NGHTTP2_ENHANCE_YOUR_CALM as soon as a few 4 MiB messages are in flight on one session.
 */
export const HTTP2_SESSION_MEMORY_MB = 256;

/**
 * HTTP/2 flow-control window, per stream and per connection. The protocol's default (64 KiB) makes
 * a 4 MiB block cross loopback in dozens of round trips; a window the size of a few blocks lets
 * the sender stream at memory speed while still bounding what one peer can buffer.
 */
export const HTTP2_WINDOW_BYTES = 32 * 1024 * 1024;
