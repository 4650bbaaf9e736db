/*
 * check_tls.c - PEM option values (inline, base64, file) and the TLS client
 * context of engine.redis.tls: what is accepted and what each mistake says.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "b64.h"
#include "buf.h"
#include "pem.h"
#include "tls_tunnel.h"

/* A P-256 key and a self-signed certificate for it, as PEM text. */
static void
make_identity(struct buf *cert, struct buf *key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *b;
	char *p;
	long n;

	ck_assert_ptr_nonnull(pk);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"unit", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	ck_assert_int_gt(X509_sign(x, pk, EVP_sha256()), 0);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	buf_append(cert, p, (size_t)n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	buf_append(key, p, (size_t)n);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static char *
write_temp(const struct buf *b)
{
	char *path = strdup("/tmp/check_tls.XXXXXX");
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, b->data, b->len), (ssize_t)b->len);
	close(fd);
	return path;
}

START_TEST(test_pem_forms)
{
	struct buf cert = BUF_INIT, key = BUF_INIT, b64 = BUF_INIT, wrapped = BUF_INIT;
	struct buf out = BUF_INIT, err = BUF_INIT;
	char *path;

	make_identity(&cert, &key);
	/* inline text */
	ck_assert_int_eq(pem_resolve("opt", buf_cstr(&cert), &out, &err), 0);
	ck_assert_mem_eq(out.data, cert.data, cert.len);
	/* base64 of it, on one line and wrapped at 64 as base64(1) prints */
	b64_encode(cert.data, cert.len, 0, &b64);
	buf_reset(&out);
	ck_assert_int_eq(pem_resolve("opt", buf_cstr(&b64), &out, &err), 0);
	ck_assert_uint_eq(out.len, cert.len);
	ck_assert_mem_eq(out.data, cert.data, cert.len);
	for (size_t i = 0; i < b64.len; i += 64) {
		buf_append(&wrapped, b64.data + i, b64.len - i < 64 ? b64.len - i : 64);
		buf_putc(&wrapped, '\n');
	}
	buf_reset(&out);
	ck_assert_int_eq(pem_resolve("opt", buf_cstr(&wrapped), &out, &err), 0);
	ck_assert_mem_eq(out.data, cert.data, cert.len);
	/* a file */
	path = write_temp(&cert);
	buf_reset(&out);
	ck_assert_int_eq(pem_resolve("opt", path, &out, &err), 0);
	ck_assert_mem_eq(out.data, cert.data, cert.len);
	unlink(path);
	free(path);
	/* none of them: the message names the option */
	buf_reset(&out);
	ck_assert_int_eq(pem_resolve("option 'x.cert_pem'", "/no/such/file.pem", &out, &err), -1);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "option 'x.cert_pem': not PEM"));
	buf_free(&cert);
	buf_free(&key);
	buf_free(&b64);
	buf_free(&wrapped);
	buf_free(&out);
	buf_free(&err);
}
END_TEST

static SSL_CTX *
ctx_of(const char *cert, const char *key, const char *ca, int insecure, struct buf *err)
{
	struct tls_client_conf t = {
		.opt = "engine.redis.tls", .cert_pem = cert, .key_pem = key,
		.server_ca_pem = ca, .server_name = "", .insecure_skip_verify = insecure,
	};
	buf_reset(err);
	return tls_client_ctx_new(&t, err, NULL);
}

START_TEST(test_client_ctx)
{
	struct buf cert = BUF_INIT, key = BUF_INIT, cert2 = BUF_INIT, key2 = BUF_INIT, err = BUF_INIT;
	SSL_CTX *ctx;

	make_identity(&cert, &key);
	make_identity(&cert2, &key2);
	/* nothing set: the system's CAs, no client certificate */
	ctx = ctx_of("", "", "", 0, &err);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	SSL_CTX_free(ctx);
	/* insecure: no verification */
	ctx = ctx_of("", "", "", 1, &err);
	ck_assert_int_eq(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	SSL_CTX_free(ctx);
	/* a CA and a client identity */
	ctx = ctx_of(buf_cstr(&cert), buf_cstr(&key), buf_cstr(&cert2), 0, &err);
	ck_assert_msg(ctx != NULL, "%s", buf_cstr(&err));
	ck_assert_ptr_nonnull(SSL_CTX_get0_certificate(ctx));
	SSL_CTX_free(ctx);
	/* mistakes, each naming its option */
	ck_assert_ptr_null(ctx_of(buf_cstr(&cert), "", "", 0, &err));
	ck_assert_str_eq(buf_cstr(&err),
	    "option 'engine.redis.tls.cert_pem' is set without engine.redis.tls.key_pem");
	ck_assert_ptr_null(ctx_of(buf_cstr(&cert), buf_cstr(&key2), "", 0, &err));
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "option 'engine.redis.tls.key_pem': the key does not match"));
	ck_assert_ptr_null(ctx_of(buf_cstr(&key), buf_cstr(&key), "", 0, &err));
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "option 'engine.redis.tls.cert_pem': no PEM certificate"));
	ck_assert_ptr_null(ctx_of("", "", buf_cstr(&key), 0, &err));
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "option 'engine.redis.tls.server_ca_pem': no PEM certificate"));
	ck_assert_ptr_null(ctx_of(buf_cstr(&cert), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "", 0, &err));
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "option 'engine.redis.tls.key_pem': no PEM private key"));
	buf_free(&cert);
	buf_free(&key);
	buf_free(&cert2);
	buf_free(&key2);
	buf_free(&err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_pem_forms);
	tcase_add_test(tc, test_client_ctx);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
