/*
 * codec.c - the table of client protocol formats (see codec.h).
 */
#include "codec.h"
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
