/*
 * b64.c - base64 (see b64.h).
 */
#include <stdint.h>

#include "b64.h"
#include "buf.h"

static int
b64_val(unsigned char c, int url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

int
b64_decode(const char *s, size_t n, int url, struct buf *out)
{
	uint32_t acc = 0;
	int bits = 0;

	if (!url) {
		if (n % 4 != 0)
			return -1;
		if (n > 0 && s[n - 1] == '=')
			n--;
		if (n > 0 && s[n - 1] == '=')
			n--;
	}
	if (n % 4 == 1)
		return -1;
	buf_reserve(out, n / 4 * 3 + 3);
	for (size_t i = 0; i < n; i++) {
		int v = b64_val((unsigned char)s[i], url);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_putc(out, (char)(acc >> bits & 0xff));
		}
	}
	/* Non-zero leftover bits are tolerated, as Go's non-strict decoder does. */
	return 0;
}

void
b64_encode(const void *p, size_t n, int url, struct buf *out)
{
	const char *tbl = url ?
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" :
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
		buf_putc(out, tbl[v >> 18 & 63]);
		buf_putc(out, tbl[v >> 12 & 63]);
		buf_putc(out, tbl[v >> 6 & 63]);
		buf_putc(out, tbl[v & 63]);
	}
	if (i < n) {
		uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0);
		buf_putc(out, tbl[v >> 18 & 63]);
		buf_putc(out, tbl[v >> 12 & 63]);
		if (i + 1 < n)
			buf_putc(out, tbl[v >> 6 & 63]);
		else if (!url)
			buf_putc(out, '=');
		if (!url)
			buf_putc(out, '=');
	}
}
