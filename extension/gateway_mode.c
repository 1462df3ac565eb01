/*-------------------------------------------------------------------------
 *
 * gateway_mode.c
 *	  Whether the gateway key is a Stripe live-mode or test-mode key, for
 *	  the webhook functions: a test-mode event never settles an order
 *	  charged with a live key, nor the reverse (docs/reference.md,
 *	  "Webhooks").
 *
 * Only the key's prefix is looked at (sk_live_, rk_live_, sk_test_,
 * rk_test_); the key itself never leaves this file.  A key read from a
 * file (gateway_token = 'file:/path') is read as the workers read it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "guc.h"

PG_FUNCTION_INFO_V1(ft_orders_gateway_key_mode);

/* enough of a key to see its prefix */
#define FT_KEY_PREFIX_BYTES	8

/*
 * The first FT_KEY_PREFIX_BYTES of the key that ft_orders.gateway_token
 * names, after leading white space, into buf (NUL-terminated, possibly
 * shorter); false when there is none or its file cannot be read.
 */
static bool
ft_key_prefix(char *buf, size_t buflen)
{
	const char *value = ft_gateway_token ? ft_gateway_token : "";
	size_t		fileprefix = strlen(FT_TOKEN_FILE_PREFIX);
	char		head[64];
	ssize_t		n = 0;
	const char *p;

	Assert(buflen > FT_KEY_PREFIX_BYTES);
	if (strncmp(value, FT_TOKEN_FILE_PREFIX, fileprefix) == 0)
	{
		int			fd = open(value + fileprefix, O_RDONLY | O_CLOEXEC);
		ssize_t		got;

		if (fd < 0)
			return false;
		while (n < (ssize_t) sizeof(head) - 1 &&
			   (got = read(fd, head + n, sizeof(head) - 1 - n)) != 0)
		{
			if (got < 0)
			{
				if (errno == EINTR)
					continue;
				close(fd);
				explicit_bzero(head, sizeof(head));
				return false;
			}
			n += got;
		}
		close(fd);
		head[n] = '\0';
		p = head;
	}
	else
		p = value;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	strlcpy(buf, p, Min(buflen, FT_KEY_PREFIX_BYTES + 1));
	explicit_bzero(head, sizeof(head));
	return buf[0] != '\0';
}

/*
 * ft_orders._gateway_key_mode(): 'live' for a Stripe live-mode key,
 * 'test' for a test-mode (sandbox) key, NULL for anything else (no key,
 * a key of the generic protocol, a token file that cannot be read).
 */
Datum
ft_orders_gateway_key_mode(PG_FUNCTION_ARGS)
{
	char		prefix[FT_KEY_PREFIX_BYTES + 1];
	const char *mode = NULL;

	if (ft_key_prefix(prefix, sizeof(prefix)))
	{
		if (strcmp(prefix, "sk_live_") == 0 || strcmp(prefix, "rk_live_") == 0)
			mode = "live";
		else if (strcmp(prefix, "sk_test_") == 0 || strcmp(prefix, "rk_test_") == 0)
			mode = "test";
	}
	explicit_bzero(prefix, sizeof(prefix));
	if (mode == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(mode));
}
