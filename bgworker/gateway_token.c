/*-------------------------------------------------------------------------
 *
 * gateway_token.c
 *	  The gateway token in effect for a payment worker's requests
 *	  (docs/reference.md, ft_orders.gateway_token).
 *
 * ft_orders.gateway_token holds the token itself, or 'file:/path' naming
 * a file that holds it, read here (trimmed, at most FT_TOKEN_MAX_BYTES) at
 * start and after every reload.  Trouble with the file is a WARNING naming
 * the path, never the content, and requests then go out without an
 * Authorization header.  The token lives in one static buffer, wiped
 * before it is replaced; gateway_http.c puts it in a request's header
 * list and nowhere else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "gateway.h"
#include "guc.h"

/* the token in effect (from the GUC or its file), and the GUC generation seen */
static char ft_token[FT_TOKEN_MAX_BYTES + 1];
static uint64 ft_token_generation = 0;

/*
 * Read a token file into ft_token (left empty on any trouble, with a
 * WARNING that names the path but never shows the content).  Leading and
 * trailing white space (a final newline) is dropped; the rest must be
 * printable ASCII without spaces, as for a literal token.
 */
static void
ft_gateway_read_token_file(const char *path)
{
	char		buf[FT_TOKEN_MAX_BYTES + 2];
	ssize_t		n = 0;
	ssize_t		got;
	int			fd;
	char	   *start;
	char	   *end;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open gateway token file \"%s\": %m", path),
				 errhint("Requests are sent without an Authorization header until ft_orders.gateway_token is fixed and the configuration reloaded.")));
		return;
	}
	while (n < (ssize_t) sizeof(buf) - 1 &&
		   (got = read(fd, buf + n, sizeof(buf) - 1 - n)) != 0)
	{
		if (got < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not read gateway token file \"%s\": %m", path),
					 errhint("Requests are sent without an Authorization header.")));
			close(fd);
			explicit_bzero(buf, sizeof(buf));
			return;
		}
		n += got;
	}
	close(fd);
	buf[n] = '\0';

	start = buf;
	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = buf + n;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';

	if (end - start > FT_TOKEN_MAX_BYTES)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gateway token file \"%s\" is longer than %d bytes", path, FT_TOKEN_MAX_BYTES),
				 errhint("Requests are sent without an Authorization header.")));
	else if (end == start)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gateway token file \"%s\" is empty", path),
				 errhint("Requests are sent without an Authorization header.")));
	else
	{
		bool		printable = true;

		for (const char *p = start; p < end; p++)
			if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
				printable = false;
		if (!printable)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("gateway token file \"%s\" holds characters other than printable ASCII", path),
					 errhint("Requests are sent without an Authorization header.")));
		else
			memcpy(ft_token, start, end - start + 1);
	}
	explicit_bzero(buf, sizeof(buf));
}

/*
 * The token in effect, "" for none: ft_token brought up to date with
 * ft_orders.gateway_token after a (re)load of the configuration, cheap
 * when nothing was reloaded.  The caller must not keep or log it.
 */
const char *
ft_gateway_token_in_effect(void)
{
	const char *value = ft_gateway_token ? ft_gateway_token : "";
	size_t		prefix = strlen(FT_TOKEN_FILE_PREFIX);

	if (ft_token_generation == ft_gateway_token_generation)
		return ft_token;
	ft_token_generation = ft_gateway_token_generation;
	explicit_bzero(ft_token, sizeof(ft_token));

	if (strncmp(value, FT_TOKEN_FILE_PREFIX, prefix) == 0)
		ft_gateway_read_token_file(value + prefix);
	else
		strlcpy(ft_token, value, sizeof(ft_token));
	return ft_token;
}
