/*
 * check_engine.c - the pieces of the multi-node engines that stand alone:
 * packed string lists (buf items), the channel -> shard choice, and the
 * Redis address parser's edge cases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "redis_addr.h"

START_TEST(test_items_round_trip)
{
	struct buf b = BUF_INIT;
	size_t off = 0;
	const char *p;
	uint32_t len;

	buf_put_item(&b, "chat", 4);
	buf_put_item(&b, "", 0);
	buf_put_item(&b, "a\0b", 3);
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 1);
	ck_assert_uint_eq(len, 4);
	ck_assert_int_eq(memcmp(p, "chat", 4), 0);
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 1);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(p, "a\0b", 3), 0);
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 0);
	ck_assert_uint_eq(off, b.len);
	buf_free(&b);
}
END_TEST

START_TEST(test_items_truncated)
{
	struct buf b = BUF_INIT;
	size_t off = 0;
	const char *p;
	uint32_t len;

	buf_put_item(&b, "abcdef", 6);
	b.len -= 2;                     /* the last bytes are missing */
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 0);
	ck_assert_uint_eq(off, 0);
	b.len = 2;                      /* not even a whole length */
	ck_assert_int_eq(buf_next_item(&b, &off, &p, &len), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_shard_index)
{
	unsigned counts[4] = { 0 }, moved = 0;
	char name[32];

	ck_assert_uint_eq(redis_shard_index("x", 1, 1), 0);
	ck_assert_uint_eq(redis_shard_index("x", 1, 0), 0);
	for (int i = 0; i < 4000; i++) {
		int n = snprintf(name, sizeof(name), "chat:%d", i);
		unsigned s3 = redis_shard_index(name, (size_t)n, 3);
		unsigned s4 = redis_shard_index(name, (size_t)n, 4);
		ck_assert_uint_lt(s3, 3);
		ck_assert_uint_lt(s4, 4);
		/* stable: the same answer every time */
		ck_assert_uint_eq(s3, redis_shard_index(name, (size_t)n, 3));
		counts[s4]++;
		/* a fourth shard only takes channels, never reshuffles them */
		if (s4 != s3) {
			ck_assert_uint_eq(s4, 3);
			moved++;
		}
	}
	for (int s = 0; s < 4; s++)
		ck_assert_uint_gt(counts[s], 700);       /* roughly even */
	ck_assert_uint_gt(moved, 700);
	ck_assert_uint_lt(moved, 1300);
}
END_TEST

START_TEST(test_addr_forms)
{
	struct redis_addr a;
	char why[200];

	ck_assert_int_eq(redis_addr_parse("tcp://10.0.0.5:7000", &a, why, sizeof(why)), 0);
	ck_assert_str_eq(a.host, "10.0.0.5");
	ck_assert_int_eq(a.port, 7000);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse("redis://:secret@h/", &a, why, sizeof(why)), 0);
	ck_assert_ptr_null(a.user);
	ck_assert_str_eq(a.password, "secret");
	ck_assert_int_eq(a.port, 6379);
	ck_assert_int_eq(a.db, -1);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse("redis://h:1/2?connect_timeout=1s", &a, why, sizeof(why)), 0);
	ck_assert_int_eq(a.db, 2);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse("", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("redis://", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("h:-1", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("h:1/-3", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("rediss+cluster://h:1", &a, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "not supported"));
}
END_TEST

START_TEST(test_sentinels)
{
	struct redis_addr *list;
	size_t n;
	char why[200];

	ck_assert_int_eq(redis_sentinels_parse("10.0.0.1:26379,10.0.0.2:26380,s3", &list, &n,
	    why, sizeof(why)), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(list[1].host, "10.0.0.2");
	ck_assert_int_eq(list[1].port, 26380);
	ck_assert_int_eq(list[2].port, 6379);
	redis_sentinels_free(list, n);
	ck_assert_int_eq(redis_sentinels_parse("a:1,,b:2", &list, &n, why, sizeof(why)), -1);
	ck_assert_ptr_null(list);
	ck_assert_int_eq(redis_sentinels_parse("unix:///tmp/s", &list, &n, why, sizeof(why)), -1);
	ck_assert_ptr_nonnull(strstr(why, "host:port"));
	ck_assert_int_eq(redis_sentinels_parse("a:1,b:x", &list, &n, why, sizeof(why)), -1);
}
END_TEST

static Suite *
engine_suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_items_round_trip);
	tcase_add_test(tc, test_items_truncated);
	tcase_add_test(tc, test_shard_index);
	tcase_add_test(tc, test_addr_forms);
	tcase_add_test(tc, test_sentinels);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(engine_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
