/*-------------------------------------------------------------------------
 *
 * textlog.c
 *	  An append-only log of text lines for the tests to read back: one
 *	  line per logged request (GET /ledger/requests, ledger.c) or per
 *	  request the limiter turned away (GET /ledger/limited, limiter.c).
 *
 * Each log has its own mutex, so appending never waits for the ledger or
 * the limiter.  A line is formatted in place; control characters in it
 * (but its final newline) become '_', so that a value taken from a
 * request cannot split or end a line.  The buffer doubles as it grows, up
 * to FT_TEXTLOG_MAX bytes; past that, lines are dropped, and stderr says
 * so once until the log is cleared (DELETE /ledger).
 *
 * tests/fake_gateway/textlog.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textlog.h"

/* Append one line, formatted as by printf (fmt ends with "\n"). */
void
ft_textlog_append(FtTextLog *log, const char *fmt,...)
{
	va_list		ap;
	int			n;
	size_t		need;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	need = (size_t) n + 1;		/* with snprintf's terminating NUL */

	pthread_mutex_lock(&log->lock);
	if (log->len + need > log->cap)
	{
		size_t		cap = log->cap ? log->cap : 65536;
		char	   *p;

		while (cap < log->len + need && cap < FT_TEXTLOG_MAX)
			cap *= 2;
		if (cap > FT_TEXTLOG_MAX)
			cap = FT_TEXTLOG_MAX;
		if (log->len + need > cap)
		{
			if (!log->full)
				fprintf(stderr, "fake_gateway: %s log full (%zu bytes): further lines dropped\n",
						log->name, log->len);
			log->full = true;
			pthread_mutex_unlock(&log->lock);
			return;
		}
		p = realloc(log->buf, cap);
		if (p == NULL)
		{
			fprintf(stderr, "fake_gateway: out of memory\n");
			abort();
		}
		log->buf = p;
		log->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(log->buf + log->len, need, fmt, ap);
	va_end(ap);
	for (size_t i = log->len; i + 1 < log->len + (size_t) n; i++)
		if ((unsigned char) log->buf[i] < 0x20)
			log->buf[i] = '_';
	log->len += (size_t) n;
	pthread_mutex_unlock(&log->lock);
}

/* The whole log, NUL-terminated, in a malloc'd buffer; *len without NUL. */
char *
ft_textlog_copy(FtTextLog *log, size_t *len)
{
	char	   *buf;

	pthread_mutex_lock(&log->lock);
	buf = malloc(log->len + 1);
	if (buf == NULL)
	{
		fprintf(stderr, "fake_gateway: out of memory\n");
		abort();
	}
	if (log->len > 0)
		memcpy(buf, log->buf, log->len);
	buf[log->len] = '\0';
	*len = log->len;
	pthread_mutex_unlock(&log->lock);
	return buf;
}

/* Forget every line (the buffer is kept for reuse). */
void
ft_textlog_clear(FtTextLog *log)
{
	pthread_mutex_lock(&log->lock);
	log->len = 0;
	log->full = false;
	pthread_mutex_unlock(&log->lock);
}
