/*
 * codec.c - the table of client protocol formats (see codec.h).
 */
#include <string.h>

#include "codec.h"
#include "config.h"
#include "json.h"
#include "msg.h"
#include "proto.h"
#include "proto_pb.h"

const struct codec codecs[CODEC_COUNT] = {
	[CODEC_JSON] = {
		.name = "json",
		.binary = 0,
		.next = proto_json_next,
		.ping = proto_json_ping,
		.error_code = proto_json_error_code,
		.empty_result = proto_json_empty_result,
		.connect_result = proto_json_connect_result,
		.subscribe_result = proto_json_subscribe_result,
		.presence_result = proto_json_presence_result,
		.presence_stats_result = proto_json_presence_stats_result,
		.history_result = proto_json_history_result,
		.refresh_result = proto_json_refresh_result,
		.sub_refresh_result = proto_json_sub_refresh_result,
		.push = proto_json_push,
		.push_pub = proto_json_push_pub,
	},
	[CODEC_PROTOBUF] = {
		.name = "protobuf",
		.binary = 1,
		.next = proto_pb_next,
		.ping = proto_pb_ping,
		.error_code = proto_pb_error_code,
		.empty_result = proto_pb_empty_result,
		.connect_result = proto_pb_connect_result,
		.subscribe_result = proto_pb_subscribe_result,
		.presence_result = proto_pb_presence_result,
		.presence_stats_result = proto_pb_presence_stats_result,
		.history_result = proto_pb_history_result,
		.refresh_result = proto_pb_refresh_result,
		.sub_refresh_result = proto_pb_sub_refresh_result,
		.push = proto_pb_push,
		.push_pub = proto_pb_push_pub,
	},
};

void
codec_client_info(const struct msg *m, struct proto_client_info *ci)
{
	ci->user = (struct proto_span){ m->user.p, m->user.len };
	ci->client = (struct proto_span){ m->client.p, m->client.len };
	ci->conn_info = (struct proto_span){ m->conn_info.p, m->conn_info.len };
	ci->chan_info = (struct proto_span){ m->chan_info.p, m->chan_info.len };
}

void
codec_publication(const struct msg *m, struct proto_publication *pub, struct proto_tag *tags)
{
	memset(pub, 0, sizeof(*pub));
	pub->data = (struct proto_span){ m->data.p, m->data.len };
	if (m->has_info) {
		pub->has_info = 1;
		codec_client_info(m, &pub->info);
	}
	pub->offset = m->offset;
	if (m->offset == 1)
		pub->epoch = (struct proto_span){ m->epoch.p, m->epoch.len };
	for (uint32_t i = 0; i < m->ntags; i++) {
		tags[i].key = (struct proto_span){ m->tags[2 * i].p, m->tags[2 * i].len };
		tags[i].value = (struct proto_span){ m->tags[2 * i + 1].p, m->tags[2 * i + 1].len };
	}
	pub->tags = tags;
	pub->ntags = m->ntags;
}

int
codec_presence_next(const struct msg *m, size_t *pos, struct proto_client_info *ci)
{
	struct msg_str f[4];

	for (int k = 0; k < 4; k++)
		if (msg_item_next(m, pos, &f[k]) != 1)
			return 0;
	ci->user = (struct proto_span){ f[0].p, f[0].len };
	ci->client = (struct proto_span){ f[1].p, f[1].len };
	ci->conn_info = (struct proto_span){ f[2].p, f[2].len };
	ci->chan_info = (struct proto_span){ f[3].p, f[3].len };
	return 1;
}

int
codec_data_ok(const struct chan_opts *o, const char *p, size_t len)
{
	const char *fmt = o->publication_data_format;
	struct json_val v;

	if (strcmp(fmt, "binary") == 0)
		return 1;
	if (len == 0)
		return 0;
	if (strcmp(fmt, "json") == 0)
		return json_parse(p, len, NULL, NULL) == 0;
	if (strcmp(fmt, "json_object") == 0)
		return json_parse(p, len, &v, NULL) == 0 && v.type == JSON_OBJECT;
	return 1;
}
