/*
 * pem.c - resolves a PEM configuration option value (see pem.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "buf.h"
#include "pem.h"

int
pem_resolve(const char *opt, const char *val, struct buf *pem, struct buf *err)
{
	struct buf flat = BUF_INIT, dec = BUF_INIT;
	char chunk[4096];
	size_t n;
	FILE *f;

	if (strstr(val, "-----BEGIN") != NULL) {
		buf_puts(pem, val);
		return 0;
	}
	/* base64 as `base64` prints it may be wrapped; drop the line breaks */
	for (n = 0; val[n] != '\0'; n++) {
		if (val[n] != '\n' && val[n] != '\r')
			buf_putc(&flat, val[n]);
	}
	if (flat.len > 0 && b64_decode(flat.data, flat.len, 0, &dec) == 0 && dec.len > 0 &&
	    memmem(dec.data, dec.len, "-----BEGIN", 10) != NULL) {
		buf_append(pem, dec.data, dec.len);
		buf_free(&flat);
		buf_free(&dec);
		return 0;
	}
	buf_free(&flat);
	buf_free(&dec);
	f = fopen(val, "r");
	if (f == NULL) {
		buf_printf(err, "%s: not PEM, not base64 PEM, and cannot open as a file: %s",
			opt, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(pem, chunk, n);
	if (ferror(f)) {
		buf_printf(err, "%s: reading %s: %s", opt, val, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}
