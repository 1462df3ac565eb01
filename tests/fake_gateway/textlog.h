/*-------------------------------------------------------------------------
 *
 * textlog.h
 *	  An append-only log of text lines, served as text/plain by
 *	  GET /ledger/requests and GET /ledger/limited (textlog.c).
 *
 * tests/fake_gateway/textlog.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_TEXTLOG_H
#define FT_TEXTLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* the most bytes one log keeps; lines beyond it are dropped (stderr says so) */
#define FT_TEXTLOG_MAX		((size_t) 256 * 1024 * 1024)

typedef struct FtTextLog
{
	const char *name;			/* for the message when the log is full */
	pthread_mutex_t lock;
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		full;			/* a line was dropped since the last clear */
} FtTextLog;

#define FT_TEXTLOG_INIT(logname) \
	{ (logname), PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, false }

extern void ft_textlog_append(FtTextLog *log, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern char *ft_textlog_copy(FtTextLog *log, size_t *len);
extern void ft_textlog_clear(FtTextLog *log);

#endif							/* FT_TEXTLOG_H */
