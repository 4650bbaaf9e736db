/*
 * codec.h - the two wire formats of the client protocol behind one table,
 * so a session picks its format once (protocol.md §1.2) and the rest of
 * the code does not care: JSON (proto.c) and Protobuf (proto_pb.c).
 * Every encoder appends exactly one protocol message to a struct buf.
 */
#ifndef CENTRIFUGO_CODEC_H
#define CENTRIFUGO_CODEC_H

#include "proto.h"

enum codec_format {
	CODEC_JSON = 0,
	CODEC_PROTOBUF,
	CODEC_COUNT
};

struct codec {
	const char *name;
	int binary;             /* frames go out as binary WebSocket messages */
	int (*next)(struct proto_reader *rd, struct proto_cmd *cmd);
	void (*ping)(struct buf *out);
	void (*error_code)(struct buf *out, uint32_t id, uint32_t code);
	void (*empty_result)(struct buf *out, uint32_t id, enum proto_cmd_type type);
	void (*connect_result)(struct buf *out, uint32_t id, const struct proto_connect_result *r);
	void (*subscribe_result)(struct buf *out, uint32_t id, const struct proto_subscribe_result *r);
	void (*presence_result)(struct buf *out, uint32_t id,
	    const struct proto_client_info *infos, size_t n);
	void (*presence_stats_result)(struct buf *out, uint32_t id, uint32_t num_clients,
	    uint32_t num_users);
	void (*history_result)(struct buf *out, uint32_t id, const struct proto_publication *pubs,
	    size_t n, struct proto_span epoch, uint64_t offset);
	void (*refresh_result)(struct buf *out, uint32_t id, const struct proto_refresh_result *r);
	void (*sub_refresh_result)(struct buf *out, uint32_t id, bool expires, uint32_t ttl);
	void (*push)(struct buf *out, const struct proto_push *push);
	void (*push_pub)(struct buf *out, struct proto_span channel,
	    const struct proto_publication *pub);
};

extern const struct codec codecs[CODEC_COUNT];

struct chan_opts;
struct msg;

/* Does a publication payload pass the namespace's publication_data_format
 * ("" = not empty, json, json_object, binary = anything)?  1 / 0.  Shared
 * by client publishes and the server API. */
int codec_data_ok(const struct chan_opts *o, const char *p, size_t len);

/* The publication of a MSG_PUB record m, as encoder input: spans point
 * into m, tags (room for MSG_MAX_TAGS) receives its tags.  The epoch is set
 * on the first publication of a stream (offset 1), as upstream does. */
void codec_publication(const struct msg *m, struct proto_publication *pub,
    struct proto_tag *tags);
/* The ClientInfo carried by a record (user, client, conn_info, chan_info). */
void codec_client_info(const struct msg *m, struct proto_client_info *ci);
/* The next ClientInfo of a PRESENCE_RESULT's items (four strings each):
 * 1, or 0 at the end.  *pos starts at 0. */
int codec_presence_next(const struct msg *m, size_t *pos, struct proto_client_info *ci);

#endif
