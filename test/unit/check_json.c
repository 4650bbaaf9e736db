/*
 * check_json.c - unit tests for the JSON toolkit (src/json.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "json.h"

/* Validate a NUL-terminated document. */
static int
valid(const char *s)
{
	return json_validate(s, strlen(s), NULL);
}

static struct json_val
num(const char *s)
{
	struct json_val v = { s, strlen(s), JSON_NUMBER };

	return v;
}

START_TEST(test_valid_documents)
{
	static const char *const ok[] = {
		"{}", "[]", "\"\"", "0", "-0", "1.5", "-1.5e10", "1E+2", "1e-2",
		"true", "false", "null", " \t\r\n{ } \n",
		"{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":\"x\"}",
		"[[[[[]]]]]", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"",
		"\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"\\udc00x\"",
		"\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"", "\"\x7f\"",
		"123456789012345678901234567890",
		"1e999999", "{\"\":\"\"}", "[1 , 2 ]",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(valid(ok[i]) == 0, "should be valid: %s", ok[i]);
}
END_TEST

START_TEST(test_invalid_documents)
{
	static const char *const bad[] = {
		"", " ", "{", "[", "{\"a\"", "{\"a\":", "{\"a\":1", "[1,",
		"\"abc", "tru", "nul", "falsey", "{}x", "{} {}", "[1,]",
		"{\"a\":1,}", "{a:1}", "{'a':1}", "[1 2]", "{\"a\" 1}",
		"01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN",
		"Infinity", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\",
		"\"a\tb\"", "\"a\nb\"", "\"\x01\"", "]", "}", ",", ":",
		"{\"a\":1]", "[1}", "\"\xff\"", "\"\xc3\"", "\"\xc0\x80\"",
		"\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
		"\"\xf5\x80\x80\x80\"", "\"\x80\"", "\"\xe2\x82\"",
		"\"\xf0\x9f\x98\"",
	};
	size_t i;
	struct json_err err;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg = NULL;
		ck_assert_msg(json_validate(bad[i], strlen(bad[i]), &err) < 0,
		    "should be invalid: %s", bad[i]);
		ck_assert_ptr_nonnull(err.msg);
	}
}
END_TEST

START_TEST(test_error_position)
{
	struct json_err err;

	ck_assert_int_eq(json_validate("{\"a\":tx}", 8, &err), -1);
	ck_assert_uint_eq(err.off, 5);
	ck_assert_str_eq(err.msg, "invalid literal");
	ck_assert_int_eq(json_validate("{} x", 4, &err), -1);
	ck_assert_uint_eq(err.off, 3);
	ck_assert_str_eq(err.msg, "trailing data after value");
	ck_assert_int_eq(json_validate("\"\xff\"", 3, &err), -1);
	ck_assert_str_eq(err.msg, "invalid UTF-8 in string");
	ck_assert_int_eq(json_validate("\"a\x1f\"", 4, &err), -1);
	ck_assert_str_eq(err.msg, "unescaped control character in string");
}
END_TEST

START_TEST(test_embedded_nul)
{
	/* A raw NUL is a control character; an escaped one is fine. */
	ck_assert_int_eq(json_validate("\"a\0b\"", 5, NULL), -1);
	ck_assert_int_eq(json_validate("\"\\u0000\"", 8, NULL), 0);
	ck_assert_int_eq(json_validate("1\0", 2, NULL), -1);
}
END_TEST

START_TEST(test_depth_limit)
{
	char doc[2 * (JSON_MAX_DEPTH + 2) + 1];
	size_t i, n;

	/* Exactly JSON_MAX_DEPTH levels: ok. */
	n = 0;
	for (i = 0; i < JSON_MAX_DEPTH; i++)
		doc[n++] = '[';
	for (i = 0; i < JSON_MAX_DEPTH; i++)
		doc[n++] = ']';
	ck_assert_int_eq(json_validate(doc, n, NULL), 0);

	/* One more: rejected. */
	n = 0;
	for (i = 0; i <= JSON_MAX_DEPTH; i++)
		doc[n++] = '[';
	for (i = 0; i <= JSON_MAX_DEPTH; i++)
		doc[n++] = ']';
	ck_assert_int_eq(json_validate(doc, n, NULL), -1);
}
END_TEST

START_TEST(test_depth_limit_objects)
{
	struct buf b = BUF_INIT;
	struct json_err err;
	int i;

	for (i = 0; i < JSON_MAX_DEPTH; i++)
		buf_puts(&b, "{\"a\":");
	buf_puts(&b, "1");
	for (i = 0; i < JSON_MAX_DEPTH; i++)
		buf_putc(&b, '}');
	ck_assert_int_eq(json_validate(b.data, b.len, NULL), 0);
	buf_reset(&b);
	for (i = 0; i < 100000; i++)
		buf_puts(&b, "{\"a\":[");
	ck_assert_int_eq(json_validate(b.data, b.len, &err), -1);
	ck_assert_str_eq(err.msg, "nesting too deep");
	buf_free(&b);
}
END_TEST

START_TEST(test_scan_extent_and_type)
{
	const char *doc = "  {\"a\":[1,2]}  , \"s\"";
	struct json_val v;
	size_t pos = 0;

	ck_assert_int_eq(json_scan(doc, strlen(doc), &pos, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_OBJECT);
	ck_assert_uint_eq(v.len, 11);
	ck_assert(memcmp(v.p, "{\"a\":[1,2]}", 11) == 0);
	ck_assert_uint_eq(pos, 13);

	ck_assert_int_eq(json_parse(" -12.5e3 ", 9, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_NUMBER);
	ck_assert_uint_eq(v.len, 7);
	ck_assert_int_eq(json_parse("\"x\"", 3, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_STRING);
	ck_assert_uint_eq(v.len, 3);
	ck_assert_int_eq(json_parse("true", 4, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_TRUE);
	ck_assert_int_eq(json_parse("false", 5, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_FALSE);
	ck_assert_int_eq(json_parse("null", 4, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_NULL);
	ck_assert_int_eq(json_parse("[]", 2, &v, NULL), 0);
	ck_assert_int_eq(v.type, JSON_ARRAY);
	ck_assert_str_eq(json_type_name(JSON_ARRAY), "array");
	ck_assert_str_eq(json_type_name((enum json_type)99), "none");
}
END_TEST

START_TEST(test_truncated_everywhere)
{
	/* Every proper prefix of a valid document is invalid (no overread:
	 * each prefix is copied into an exact-size heap block for ASan). */
	const char *doc = "{\"a\":[1,-2.5e+3,true,false,null,\"\\u00e9\\n\"],"
	    "\"b\":{\"c\":\"\xe2\x82\xac\"}}";
	size_t n, len = strlen(doc);
	char *cp;

	ck_assert_int_eq(valid(doc), 0);
	for (n = 0; n < len; n++) {
		cp = malloc(n ? n : 1);
		memcpy(cp, doc, n);
		ck_assert_msg(json_validate(cp, n, NULL) < 0, "prefix %zu", n);
		free(cp);
	}
}
END_TEST

START_TEST(test_iter_object)
{
	const char *doc = "{ \"a\" : 1 , \"b\":\"x\",\"\\u0063\":[1],\"a\":null }";
	struct json_iter it;
	struct json_val k, v;

	ck_assert_int_eq(json_iter_init(&it, doc, strlen(doc)), 0);
	ck_assert(it.object);
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 1);
	ck_assert(json_str_eq(&k, "a"));
	ck_assert_int_eq(v.type, JSON_NUMBER);
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 1);
	ck_assert(json_str_eq(&k, "b"));
	ck_assert(!json_str_eq(&k, "bb"));
	ck_assert_int_eq(v.type, JSON_STRING);
	ck_assert_uint_eq(v.len, 3);
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 1);
	ck_assert(json_str_eq(&k, "c"));
	ck_assert_int_eq(v.type, JSON_ARRAY);
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 1);
	ck_assert(json_str_eq(&k, "a"));
	ck_assert_int_eq(v.type, JSON_NULL);
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 0);
	ck_assert_uint_eq(json_iter_end(&it), strlen(doc));
	ck_assert_int_eq(json_iter_next(&it, &k, &v), 0);
}
END_TEST

START_TEST(test_iter_array_and_errors)
{
	struct json_iter it;
	struct json_val v;
	int n = 0, rc;

	ck_assert_int_eq(json_iter_init(&it, "[1, \"2\", [3]]", 13), 0);
	ck_assert(!it.object);
	while ((rc = json_iter_next(&it, NULL, &v)) == 1)
		n++;
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(n, 3);

	ck_assert_int_eq(json_iter_init(&it, "[]", 2), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), 0);

	ck_assert_int_eq(json_iter_init(&it, "1", 1), -1);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_int_eq(json_iter_init(&it, "", 0), -1);

	ck_assert_int_eq(json_iter_init(&it, "{\"a\":1,}", 8), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), 1);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_ptr_nonnull(it.err.msg);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);

	ck_assert_int_eq(json_iter_init(&it, "{\"a\" 1}", 7), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_int_eq(json_iter_init(&it, "{1:1}", 5), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_int_eq(json_iter_init(&it, "{\"a\":1 \"b\":2}", 13), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), 1);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_int_eq(json_iter_init(&it, "{\"a\":1", 6), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), 1);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_str_eq(it.err.msg, "unexpected end of input");
	ck_assert_int_eq(json_iter_init(&it, "{\"a\":\"\xff\"}", 8), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
	ck_assert_int_eq(json_iter_init(&it, "[1", 2), 0);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), 1);
	ck_assert_int_eq(json_iter_next(&it, NULL, &v), -1);
}
END_TEST

static void
check_unescape(const char *in, size_t inlen, const char *want, size_t wantlen)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(json_unescape(in, inlen, &b), 0);
	ck_assert_uint_eq(b.len, wantlen);
	ck_assert(wantlen == 0 || memcmp(b.data, want, wantlen) == 0);
	ck_assert(b.len <= inlen - 2);
	buf_free(&b);
}

#define UNESC(in, want) check_unescape(in, sizeof(in) - 1, want, sizeof(want) - 1)

START_TEST(test_unescape)
{
	struct buf b = BUF_INIT;

	UNESC("\"\"", "");
	UNESC("\"plain\"", "plain");
	UNESC("\"a\\/b\"", "a/b");                  /* PHP-style \/ */
	UNESC("\"\\\"\\\\\\b\\f\\n\\r\\t\"", "\"\\\b\f\n\r\t");
	UNESC("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac");
	UNESC("\"\\ud83d\\ude00!\"", "\xf0\x9f\x98\x80!");  /* pair */
	UNESC("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80");
	UNESC("\"\\ud800\"", "\xef\xbf\xbd");       /* lone high */
	UNESC("\"\\ud800x\"", "\xef\xbf\xbdx");
	UNESC("\"\\udc00\"", "\xef\xbf\xbd");       /* lone low */
	UNESC("\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80");
	UNESC("\"\\ud800\\n\"", "\xef\xbf\xbd\n");
	UNESC("\"\\u0000\"", "\0");
	UNESC("\"h\xc3\xa9\"", "h\xc3\xa9");

	ck_assert_int_eq(json_unescape("x", 1, &b), -1);
	ck_assert_int_eq(json_unescape("\"", 1, &b), -1);
	ck_assert_int_eq(json_unescape("\"\\\"", 3, &b), -1);
	ck_assert_int_eq(json_unescape("\"\\q\"", 4, &b), -1);
	ck_assert_int_eq(json_unescape("\"\\u12\"", 6, &b), -1);
	ck_assert_int_eq(json_unescape("\"\\uzzzz\"", 8, &b), -1);
	buf_free(&b);

	ck_assert(json_str_plain("\"abc\"", 5));
	ck_assert(!json_str_plain("\"a\\nc\"", 6));
}
END_TEST

START_TEST(test_str_eq_escaped)
{
	struct json_val s = { "\"\\u0069\\u0064\"", 14, JSON_STRING };
	struct json_val t = { "\"id\"", 4, JSON_STRING };
	struct json_val n = { "1", 1, JSON_NUMBER };

	ck_assert(json_str_eq(&s, "id"));
	ck_assert(!json_str_eq(&s, "i"));
	ck_assert(json_str_eq(&t, "id"));
	ck_assert(!json_str_eq(&t, "idx"));
	ck_assert(!json_str_eq(&n, "1"));
}
END_TEST

START_TEST(test_integers)
{
	struct json_val v;
	uint64_t u = 7;
	int64_t i = 7;
	uint32_t u32 = 7;
	int32_t i32 = 7;
	bool b;

	v = num("0");
	ck_assert_int_eq(json_get_u64(&v, &u), 0);
	ck_assert_uint_eq(u, 0);
	v = num("18446744073709551615");
	ck_assert_int_eq(json_get_u64(&v, &u), 0);
	ck_assert(u == UINT64_MAX);
	v = num("18446744073709551616");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	ck_assert(u == UINT64_MAX);
	v = num("99999999999999999999999");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("-1");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("-0");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	ck_assert_int_eq(json_get_i64(&v, &i), 0);
	ck_assert_int_eq(i, 0);
	v = num("1.5");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("1.0");
	ck_assert_int_eq(json_get_i64(&v, &i), -1);
	v = num("1e2");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("01");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("");
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	v = num("-");
	ck_assert_int_eq(json_get_i64(&v, &i), -1);

	v = num("9223372036854775807");
	ck_assert_int_eq(json_get_i64(&v, &i), 0);
	ck_assert(i == INT64_MAX);
	v = num("9223372036854775808");
	ck_assert_int_eq(json_get_i64(&v, &i), -1);
	v = num("-9223372036854775808");
	ck_assert_int_eq(json_get_i64(&v, &i), 0);
	ck_assert(i == INT64_MIN);
	v = num("-9223372036854775809");
	ck_assert_int_eq(json_get_i64(&v, &i), -1);

	v = num("4294967295");
	ck_assert_int_eq(json_get_u32(&v, &u32), 0);
	ck_assert(u32 == UINT32_MAX);
	v = num("4294967296");
	ck_assert_int_eq(json_get_u32(&v, &u32), -1);
	ck_assert(u32 == UINT32_MAX);
	v = num("2147483647");
	ck_assert_int_eq(json_get_i32(&v, &i32), 0);
	ck_assert_int_eq(i32, INT32_MAX);
	v = num("2147483648");
	ck_assert_int_eq(json_get_i32(&v, &i32), -1);
	v = num("-2147483648");
	ck_assert_int_eq(json_get_i32(&v, &i32), 0);
	ck_assert_int_eq(i32, INT32_MIN);
	v = num("-2147483649");
	ck_assert_int_eq(json_get_i32(&v, &i32), -1);
	v = num("-1");
	ck_assert_int_eq(json_get_i32(&v, &i32), 0);
	ck_assert_int_eq(i32, -1);

	/* Wrong JSON type. */
	v.p = "\"1\"";
	v.len = 3;
	v.type = JSON_STRING;
	ck_assert_int_eq(json_get_u64(&v, &u), -1);
	ck_assert_int_eq(json_get_bool(&v, &b), -1);
	v.p = "true";
	v.len = 4;
	v.type = JSON_TRUE;
	ck_assert_int_eq(json_get_u32(&v, &u32), -1);
	ck_assert_int_eq(json_get_bool(&v, &b), 0);
	ck_assert(b);
	v.type = JSON_FALSE;
	ck_assert_int_eq(json_get_bool(&v, &b), 0);
	ck_assert(!b);
}
END_TEST

static void
check_put_string(const char *in, size_t inlen, const char *want, int wantrc)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(json_put_string(&b, in, inlen), wantrc);
	ck_assert_uint_eq(b.len, strlen(want));
	ck_assert_msg(memcmp(b.data, want, b.len) == 0, "got %.*s",
	    (int)b.len, b.data);
	ck_assert(memchr(b.data, '\n', b.len) == NULL);
	ck_assert_int_eq(json_validate(b.data, b.len, NULL), 0);
	buf_free(&b);
}

#define PUTS(in, want, rc) check_put_string(in, sizeof(in) - 1, want, rc)

START_TEST(test_put_string)
{
	PUTS("", "\"\"", 0);
	PUTS("abc", "\"abc\"", 0);
	PUTS("a\"b\\c/d", "\"a\\\"b\\\\c/d\"", 0);
	PUTS("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"", 0);
	PUTS("\x01\x1f\0", "\"\\u0001\\u001f\\u0000\"", 0);
	PUTS("\x7f", "\"\x7f\"", 0);
	PUTS("h\xc3\xa9 \xf0\x9f\x98\x80", "\"h\xc3\xa9 \xf0\x9f\x98\x80\"", 0);
	PUTS("a\xffz", "\"a\xef\xbf\xbdz\"", -1);
	PUTS("\xc3", "\"\xef\xbf\xbd\"", -1);
	PUTS("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", -1);
	/* The §4.13 delta example. */
	PUTS("Q\n9@0,1:2G@A,1AI~kQ;", "\"Q\\n9@0,1:2G@A,1AI~kQ;\"", 0);
	PUTS("{\"count\":2,\"name\":\"alpha\"}",
	    "\"{\\\"count\\\":2,\\\"name\\\":\\\"alpha\\\"}\"", 0);
}
END_TEST

START_TEST(test_put_string_roundtrip)
{
	struct buf out = BUF_INIT, back = BUF_INIT;
	char in[256];
	int i;

	for (i = 0; i < 128; i++)
		in[i] = (char)i;
	ck_assert_int_eq(json_put_string(&out, in, 128), 0);
	ck_assert_int_eq(json_validate(out.data, out.len, NULL), 0);
	ck_assert_int_eq(json_unescape(out.data, out.len, &back), 0);
	ck_assert_uint_eq(back.len, 128);
	ck_assert(memcmp(back.data, in, 128) == 0);
	buf_free(&out);
	buf_free(&back);
}
END_TEST

START_TEST(test_put_raw)
{
	struct buf b = BUF_INIT;
	const char *pretty = "{\n  \"a\": [1,\n 2]\n}\n";

	json_put_raw(&b, pretty, strlen(pretty));
	ck_assert_uint_eq(b.len, strlen("{  \"a\": [1, 2]}"));
	ck_assert(memcmp(b.data, "{  \"a\": [1, 2]}", b.len) == 0);
	buf_reset(&b);
	json_put_raw(&b, "\n\n", 2);
	ck_assert_uint_eq(b.len, 0);
	json_put_raw(&b, "{\"x\":1}", 7);
	ck_assert_uint_eq(b.len, 7);
	json_put_raw(&b, "", 0);
	ck_assert_uint_eq(b.len, 7);
	buf_free(&b);
}
END_TEST

START_TEST(test_utf8_valid)
{
	ck_assert(json_utf8_valid("", 0));
	ck_assert(json_utf8_valid("abc\n\x01", 5));
	ck_assert(json_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 10));
	ck_assert(json_utf8_valid("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8));
	ck_assert(!json_utf8_valid("\xc1\xbf", 2));
	ck_assert(!json_utf8_valid("\xed\xbf\xbf", 3));
	ck_assert(!json_utf8_valid("\xf4\x90\x80\x80", 4));
	ck_assert(!json_utf8_valid("\xe2\x82", 2));
	ck_assert(!json_utf8_valid("\xe2\x28\xa1", 3));
}
END_TEST

static Suite *
json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_valid_documents);
	tcase_add_test(tc, test_invalid_documents);
	tcase_add_test(tc, test_error_position);
	tcase_add_test(tc, test_embedded_nul);
	tcase_add_test(tc, test_depth_limit);
	tcase_add_test(tc, test_depth_limit_objects);
	tcase_add_test(tc, test_scan_extent_and_type);
	tcase_add_test(tc, test_truncated_everywhere);
	tcase_add_test(tc, test_iter_object);
	tcase_add_test(tc, test_iter_array_and_errors);
	tcase_add_test(tc, test_unescape);
	tcase_add_test(tc, test_str_eq_escaped);
	tcase_add_test(tc, test_integers);
	tcase_add_test(tc, test_put_string);
	tcase_add_test(tc, test_put_string_roundtrip);
	tcase_add_test(tc, test_put_raw);
	tcase_add_test(tc, test_utf8_valid);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
