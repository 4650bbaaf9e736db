/*
 * pem.h - the value of a PEM configuration option (token keys, TLS
 * certificates, keys and CA bundles): inline PEM text, base64 of PEM text,
 * or the path of a PEM file, tried in that order, as Centrifugo does.
 */
#ifndef CENTRIFUGO_PEM_H
#define CENTRIFUGO_PEM_H

struct buf;

/* Appends the PEM text val stands for to pem.  Returns 0, or -1 with a
 * message naming opt appended to err. */
int pem_resolve(const char *opt, const char *val, struct buf *pem, struct buf *err);

#endif
