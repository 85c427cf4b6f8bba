/* SPDX-License-Identifier: MIT */
/* Per-thread error messages: vcpureq_errmsg(). */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* Points at a string literal or at errbuf of the same thread.  Storing a
 * pointer is async-signal-safe, so vcpureq__err() may run in a handler. */
static VCPUREQ__TLS const char *errmsg;
static VCPUREQ__TLS char errbuf[256];

int vcpureq__err(int err, const char *msg)
{
	errmsg = msg;
	return err;
}

int vcpureq__errf(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	errmsg = errbuf;
	return err;
}

const char *vcpureq_errmsg(void)
{
	return errmsg ? errmsg : "";
}
