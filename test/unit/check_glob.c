/*
 * check_glob.c - glob patterns of the channels API.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

static int
m(const char *p, const char *s)
{
	return glob_match(p, s, strlen(s));
}

START_TEST(test_wildcards)
{
	ck_assert(m("chat:*", "chat:one"));
	ck_assert(!m("chat:*", "news"));
	ck_assert(m("*", ""));
	ck_assert(m("*", "a:b/c"));             /* separators included */
	ck_assert(m("chat:t?o", "chat:two"));
	ck_assert(!m("chat:t?o", "chat:to"));
	ck_assert(m("a*b*c", "aXbYc"));
	ck_assert(!m("a*b*c", "aXbY"));
	ck_assert(m("**x", "abx"));
	ck_assert(!m("abc", "abcd"));
}
END_TEST

START_TEST(test_classes_and_escapes)
{
	ck_assert(m("[abc]x", "bx"));
	ck_assert(!m("[!abc]x", "bx"));
	ck_assert(m("[!abc]x", "dx"));
	ck_assert(m("[a-c]*", "cat"));
	ck_assert(!m("[a-c]*", "dog"));
	ck_assert(m("a\\*b", "a*b"));
	ck_assert(!m("a\\*b", "axb"));
	ck_assert(m("[]]", "]"));
}
END_TEST

START_TEST(test_alternatives)
{
	ck_assert(m("chat:{one,zzz}", "chat:one"));
	ck_assert(m("chat:{one,zzz}", "chat:zzz"));
	ck_assert(!m("chat:{one,zzz}", "chat:two"));
	ck_assert(m("{a,b{c,d}}e", "bde"));
	ck_assert(m("{a,b{c,d}}e", "ae"));
	ck_assert(!m("{a,b{c,d}}e", "be"));
	ck_assert(m("*:{x,y}*", "n:yak"));
	ck_assert(m("{,x}y", "y"));
}
END_TEST

START_TEST(test_invalid)
{
	ck_assert(!glob_valid("["));
	ck_assert(!glob_valid("{a"));
	ck_assert(!glob_valid("a}"));
	ck_assert(!glob_valid("x\\"));
	ck_assert(glob_valid("a{b,c}[d]"));
	ck_assert(!m("[", "["));                /* invalid matches nothing */
	/* An explosion of alternatives is refused, not expanded forever. */
	ck_assert(!m("{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}", "aaaaaaaaaa"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("glob");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_wildcards);
	tcase_add_test(tc, test_classes_and_escapes);
	tcase_add_test(tc, test_alternatives);
	tcase_add_test(tc, test_invalid);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
