/*
 * proto_pb.h - the Protobuf format of the client protocol (protocol.md §2.2,
 * §3, schema in src/client.proto).
 *
 * Runs in the workers, for connections that chose Protobuf (§1.2).  Same
 * structs and operations as the JSON codec in proto.h, with the prefix
 * proto_pb_ instead of proto_json_.  Every message on the wire, even a lone
 * one, is `varint(len) msg`; a zero-length message is a ping (server) or a
 * pong (client).  Payload spans (`data`, `conn_info`, ...) are the raw bytes
 * of the `bytes` fields, carried verbatim.
 *
 * Encoders are not reentrant: they share one per-process scratch area (the
 * workers are single-threaded).  Strings are packed by protobuf-c as C
 * strings, so a string span holding a NUL byte is cut at that byte.
 */
#ifndef CENTRIFUGO_PROTO_PB_H
#define CENTRIFUGO_PROTO_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

/*
 * Decodes the next varint-delimited Command of the frame set with
 * proto_reader_reset().  Returns 1 with *cmd filled, 0 at the end of the
 * frame, -1 if the frame is malformed: empty frame, broken varint, message
 * length beyond the frame, truncated field, invalid field number or wire
 * type, wrong wire type for a known field, invalid UTF-8 in a string field,
 * nesting deeper than 64; rd->err / rd->err_off say why and where, and the
 * caller disconnects with 3501.  After -1 every further call returns -1.
 * A zero-length message is a Command with nothing set (a pong).  Unknown
 * fields are skipped; a request field sent twice is merged (proto3), so the
 * `present` bits and `type` follow the same rules as proto_json_next().
 * Spans point into the frame (no copies); connect.subs lives in rd->subs.
 * Both stay valid until the next call / reset / free.
 */
int proto_pb_next(struct proto_reader *rd, struct proto_cmd *cmd);

/* ------------------------------------------------------------------ */
/* Encoders: each appends one varint-delimited message (a Reply, or a  */
/* bare Push for proto_pb_push_bare) to out.  Zero-valued fields are   */
/* omitted; present-but-empty messages are written as tag + 0x00.      */

/* Server ping: the empty message, the single byte 0x00. */
void proto_pb_ping(struct buf *out);

/* Reply{id, error{code, message, temporary}}; message may be NULL. */
void proto_pb_error(struct buf *out, uint32_t id, uint32_t code,
    const char *message, bool temporary);
/* Same with the §5.1 message and temporary flag of code. */
void proto_pb_error_code(struct buf *out, uint32_t id, uint32_t code);

/* Reply{id, <result of type>{}} with the result present but empty (e.g.
 * `08 02 42 00` for publish).  PROTO_CMD_SEND has no result field: only the
 * id is written.  type must not be PROTO_CMD_NONE. */
void proto_pb_empty_result(struct buf *out, uint32_t id,
    enum proto_cmd_type type);

void proto_pb_connect_result(struct buf *out, uint32_t id,
    const struct proto_connect_result *r);
void proto_pb_subscribe_result(struct buf *out, uint32_t id,
    const struct proto_subscribe_result *r);
/* presence: map client id (infos[i].client) -> ClientInfo. */
void proto_pb_presence_result(struct buf *out, uint32_t id,
    const struct proto_client_info *infos, size_t n);
void proto_pb_presence_stats_result(struct buf *out, uint32_t id,
    uint32_t num_clients, uint32_t num_users);
void proto_pb_history_result(struct buf *out, uint32_t id,
    const struct proto_publication *pubs, size_t n, struct proto_span epoch,
    uint64_t offset);
void proto_pb_rpc_result(struct buf *out, uint32_t id,
    struct proto_span data);
void proto_pb_refresh_result(struct buf *out, uint32_t id,
    const struct proto_refresh_result *r);
void proto_pb_sub_refresh_result(struct buf *out, uint32_t id,
    bool expires, uint32_t ttl);

/* Reply{push{...}} on bidirectional connections. */
void proto_pb_push(struct buf *out, const struct proto_push *push);
/* The bare Push message: the top-level message of uni transports. */
void proto_pb_push_bare(struct buf *out, const struct proto_push *push);
/* Hot path, once per publication per worker: Reply{push{channel, pub}}.
 * No heap allocation once the scratch area has grown to the usual size. */
void proto_pb_push_pub(struct buf *out, struct proto_span channel,
    const struct proto_publication *pub);

#endif
