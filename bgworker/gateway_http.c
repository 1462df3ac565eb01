/*-------------------------------------------------------------------------
 *
 * gateway_http.c
 *	  The HTTP transport of a payment worker: libcurl's multi interface
 *	  driven by the worker's one wait point.
 *
 * libcurl tells us which sockets it wants watched (CURLMOPT_SOCKETFUNCTION)
 * and when it wants to be called back (CURLMOPT_TIMERFUNCTION).  The
 * socket callback registers each socket with an epoll instance of this
 * module's own (epoll_ctl: add, change and remove in O(1)); the timer
 * callback records a deadline.  Neither pallocs nor ereports: nothing may
 * longjmp out of libcurl, so a failed epoll_ctl is only recorded and
 * reported as a WARNING at the next wait.  The worker's one wait point,
 * ft_http_wait(), is a WaitEventSet built once with the latch, postmaster
 * death and the epoll descriptor, which is readable whenever one of
 * libcurl's sockets is ready; the ready sockets are then collected with a
 * non-blocking epoll_wait and handed, like timer expiry, to
 * curl_multi_socket_action.  (A WaitEventSet cannot remove a socket, so
 * watching libcurl's sockets in it directly would mean rebuilding the set,
 * with every socket, each time libcurl drops one of its connections.)
 *
 * Easy handles come from a pool that grows up to ft_orders.max_in_flight
 * and are reused, and the multi handle keeps a connection cache of the
 * same size, so steady traffic runs over kept-alive connections.  Reply
 * bodies go into a per-handle buffer bounded at FT_REPLY_MAX_BYTES: a
 * longer reply aborts the transfer and is reported as too large.  Buffers
 * and header lists are malloc'd (libcurl callbacks must not palloc) and
 * freed in ft_http_shutdown.
 *
 * The gateway token (gateway_token.c) is put in a header list and nowhere
 * else: it is never logged (CURLOPT_VERBOSE stays off, error texts never
 * contain headers).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "gateway.h"
#include "guc.h"

/* ready sockets taken from the epoll instance per wait */
#define FT_HTTP_EPOLL_BATCH		FT_MAX_IN_FLIGHT

/* a reply buffer starts this large and doubles, up to FT_REPLY_MAX_BYTES */
#define FT_REPLY_INITIAL_BYTES	1024

typedef struct FtHttpHandle
{
	CURL	   *easy;
	int			index;			/* in ft_handles */
	struct curl_slist *headers;
	void	   *owner;			/* NULL when free */
	char	   *buf;			/* reply body, NUL-terminated */
	size_t		len;
	size_t		cap;
	bool		too_large;
	bool		out_of_memory;
	char		retry_after[FT_RETRY_AFTER_LEN];
	char		errbuf[CURL_ERROR_SIZE];
	int64		deaf_at_start;	/* ft_http_deaf_us() when it started */
} FtHttpHandle;


static CURLM *ft_multi = NULL;
static FtHttpHandle *ft_handles[FT_MAX_IN_FLIGHT];
static int	ft_nhandles = 0;	/* created */
static int	ft_free[FT_MAX_IN_FLIGHT];	/* stack of free handle indexes */
static int	ft_nfree = 0;
static int	ft_busy = 0;

/*
 * Time the worker spent outside ft_http_wait (its SQL step, building
 * requests): replies that arrive then wait for it, so that part of a
 * request's time is the worker's, not the gateway's.  ft_deaf_us sums the
 * past periods, ft_deaf_since is when the current one began (0: none).
 */
static int64 ft_deaf_us = 0;
static TimestampTz ft_deaf_since = 0;

/* written by the libcurl callbacks */
static int	ft_epoll_fd = -1;	/* libcurl's sockets */
static int	ft_epoll_errno = 0;	/* last failed epoll_ctl, 0: none */
static TimestampTz ft_timer_deadline = 0;	/* 0: no timer */

/* the wait point: latch, postmaster death, ft_epoll_fd */
static WaitEventSet *ft_wait_set = NULL;
static WaitEvent ft_occurred[3];
static struct epoll_event ft_ready[FT_HTTP_EPOLL_BATCH];

/* the socketp libcurl keeps for a socket registered with ft_epoll_fd */
static int	ft_socket_known;

/*
 * libcurl: watch fd for what (CURL_POLL_*).  A socket libcurl wants
 * watched for nothing (CURL_POLL_NONE) is taken out of the epoll set, as
 * epoll would still report hang-ups on it.  Changing a socket that epoll
 * no longer knows (closed and reopened behind libcurl's back) re-adds it.
 */
static int
ft_http_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
				  void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE || what == CURL_POLL_NONE)
	{
		/* a socket libcurl already closed has left the set by itself */
		if (epoll_ctl(ft_epoll_fd, EPOLL_CTL_DEL, fd, NULL) != 0 &&
			errno != ENOENT && errno != EBADF)
			ft_epoll_errno = errno;
		return 0;
	}

	memset(&ev, 0, sizeof(ev));
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;
	ev.data.fd = fd;

	if (socketp == NULL)
	{
		if (epoll_ctl(ft_epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
			(errno != EEXIST || epoll_ctl(ft_epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0))
		{
			ft_epoll_errno = errno;
			return 0;
		}
		curl_multi_assign(ft_multi, fd, &ft_socket_known);
	}
	else if (epoll_ctl(ft_epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
			 (errno != ENOENT || epoll_ctl(ft_epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0))
		ft_epoll_errno = errno;
	return 0;
}

/*
 * libcurl: call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) after
 * timeout_ms (-1: never).  Records only.
 */
static int
ft_http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		ft_timer_deadline = 0;
	else
		ft_timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														timeout_ms);
	return 0;
}

/* libcurl: body bytes; keep at most FT_REPLY_MAX_BYTES */
static size_t
ft_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	FtHttpHandle *h = (FtHttpHandle *) userdata;
	size_t		n = size * nmemb;

	if (n > FT_REPLY_MAX_BYTES - h->len)
	{
		h->too_large = true;
		return 0;				/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (h->len + n + 1 > h->cap)
	{
		size_t		newcap = Max(h->cap, FT_REPLY_INITIAL_BYTES);
		char	   *nb;

		while (newcap < h->len + n + 1)
			newcap *= 2;
		newcap = Min(newcap, (size_t) FT_REPLY_MAX_BYTES + 1);
		nb = realloc(h->buf, newcap);
		if (nb == NULL)
		{
			h->out_of_memory = true;
			return 0;
		}
		h->buf = nb;
		h->cap = newcap;
	}
	memcpy(h->buf + h->len, ptr, n);
	h->len += n;
	h->buf[h->len] = '\0';
	return n;
}

static void
ft_http_check_multi(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK && rc != CURLM_BAD_SOCKET)
		ereport(LOG,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("libcurl %s failed: %s", what, curl_multi_strerror(rc))));
}

/*
 * Create the multi handle.  Raises an ERROR when libcurl cannot start:
 * the worker then exits and the launcher tries again.
 */
void
ft_http_init(void)
{
	CURLcode	rc;

	(void) ft_gateway_token_in_effect();	/* a token file's trouble is said at start */

	rc = curl_global_init(CURL_GLOBAL_ALL);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
	ft_multi = curl_multi_init();
	if (ft_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	if (curl_multi_setopt(ft_multi, CURLMOPT_SOCKETFUNCTION, ft_http_socket_cb) != CURLM_OK ||
		curl_multi_setopt(ft_multi, CURLMOPT_TIMERFUNCTION, ft_http_timer_cb) != CURLM_OK ||
		curl_multi_setopt(ft_multi, CURLMOPT_MAXCONNECTS, (long) FT_MAX_IN_FLIGHT) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not configure the libcurl multi handle")));

	ft_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ft_epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create an epoll instance for libcurl's sockets: %m")));

	ft_wait_set = ft_create_wait_event_set(lengthof(ft_occurred));
	AddWaitEventToSet(ft_wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(ft_wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(ft_wait_set, WL_SOCKET_READABLE, ft_epoll_fd, NULL, NULL);
}

/* a free handle, creating one if the pool may still grow; NULL if none */
static FtHttpHandle *
ft_http_get_handle(void)
{
	FtHttpHandle *h;

	if (ft_nfree > 0)
		return ft_handles[ft_free[--ft_nfree]];
	if (ft_nhandles >= FT_MAX_IN_FLIGHT)
		return NULL;
	h = MemoryContextAllocZero(TopMemoryContext, sizeof(FtHttpHandle));
	h->easy = curl_easy_init();
	if (h->easy == NULL)
	{
		pfree(h);
		return NULL;
	}
	h->index = ft_nhandles;
	ft_handles[ft_nhandles++] = h;
	return h;
}

/*
 * Free a request's header list, each line zeroed first: the Authorization
 * line holds the token, and freed memory is reused by libcurl and malloc
 * without being cleared.
 */
static void
ft_http_free_headers(struct curl_slist *headers)
{
	for (struct curl_slist *l = headers; l != NULL; l = l->next)
	{
		if (l->data != NULL)
			explicit_bzero(l->data, strlen(l->data));
	}
	curl_slist_free_all(headers);
}

static void
ft_http_put_handle(FtHttpHandle *h)
{
	h->owner = NULL;
	if (h->headers)
		ft_http_free_headers(h->headers);
	h->headers = NULL;
	ft_free[ft_nfree++] = h->index;
}

/* append one header; false when libcurl ran out of memory */
static bool
ft_http_add_header(FtHttpHandle *h, const char *line)
{
	struct curl_slist *l = curl_slist_append(h->headers, line);

	if (l == NULL)
		return false;
	h->headers = l;
	return true;
}

#define FT_SETOPT(h, opt, val) \
	do { \
		CURLcode	setopt_rc_ = curl_easy_setopt((h)->easy, (opt), (val)); \
		if (setopt_rc_ != CURLE_OK) \
		{ \
			snprintf(errbuf, errlen, "curl_easy_setopt(%s) failed: %s", \
					 #opt, curl_easy_strerror(setopt_rc_)); \
			goto fail; \
		} \
	} while (0)

/*
 * Start POST url with body (which must stay valid until completion), of
 * type content_type (NULL: application/json), and Idempotency-Key
 * payment_key.  A NULL body makes it a GET (a provider's re-check of a
 * payment under way), without a body or Idempotency-Key.  With
 * fresh_connection the request opens a connection of its own and closes
 * it afterwards.  Returns false with a reason in errbuf if the request
 * could not even be started; the caller then treats it as a transient
 * failure.  The caller keeps in-flight requests at or below
 * ft_orders.max_in_flight.
 */
/* the worker's time outside ft_http_wait so far, in µs */
static int64
ft_http_deaf_us(TimestampTz now)
{
	return ft_deaf_us + (ft_deaf_since != 0 && now > ft_deaf_since ?
						 now - ft_deaf_since : 0);
}

bool
ft_http_start(void *owner, const char *url, const char *payment_key,
			  const char *content_type, const char *extra_header,
			  const char *body, size_t body_len, bool fresh_connection,
			  char *errbuf, size_t errlen)
{
	FtHttpHandle *h = ft_http_get_handle();
	const char *token;
	char		line[512];
	CURLMcode	mrc;

	if (h == NULL)
	{
		snprintf(errbuf, errlen, "no libcurl handle available");
		return false;
	}

	curl_easy_reset(h->easy);
	h->len = 0;
	if (h->buf)
		h->buf[0] = '\0';
	h->too_large = false;
	h->out_of_memory = false;
	h->errbuf[0] = '\0';

	if (body != NULL)
	{
		snprintf(line, sizeof(line), "Content-Type: %s",
				 content_type ? content_type : "application/json");
		if (!ft_http_add_header(h, line))
		{
			snprintf(errbuf, errlen, "out of memory building request headers");
			goto fail;
		}
	}
	snprintf(line, sizeof(line), "Idempotency-Key: %s", payment_key);
	if (!ft_http_add_header(h, "Accept: application/json") ||
		!ft_http_add_header(h, "Expect:") ||
		(body != NULL && !ft_http_add_header(h, line)))
	{
		snprintf(errbuf, errlen, "out of memory building request headers");
		goto fail;
	}
	if (extra_header != NULL && !ft_http_add_header(h, extra_header))
	{
		snprintf(errbuf, errlen, "out of memory building request headers");
		goto fail;
	}
	token = ft_gateway_token_in_effect();
	if (token[0] != '\0')
	{
		char	   *auth = psprintf("Authorization: Bearer %s", token);
		bool		added = ft_http_add_header(h, auth);

		explicit_bzero(auth, strlen(auth));
		pfree(auth);
		if (!added)
		{
			snprintf(errbuf, errlen, "out of memory building request headers");
			goto fail;
		}
	}

	FT_SETOPT(h, CURLOPT_URL, url);
	FT_SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	FT_SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	FT_SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	FT_SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	FT_SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (body != NULL)
	{
		FT_SETOPT(h, CURLOPT_POST, 1L);
		FT_SETOPT(h, CURLOPT_POSTFIELDS, body);
		FT_SETOPT(h, CURLOPT_POSTFIELDSIZE, (long) body_len);
	}
	else
		FT_SETOPT(h, CURLOPT_HTTPGET, 1L);
	FT_SETOPT(h, CURLOPT_HTTPHEADER, h->headers);
	FT_SETOPT(h, CURLOPT_USERAGENT, "ft_orders/1.0");
	FT_SETOPT(h, CURLOPT_TIMEOUT_MS, (long) ft_request_timeout_eff_ms());
	FT_SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, (long) ft_connect_timeout_ms);

	/*
	 * libcurl sends a request again, up to five times, when a reused
	 * kept-alive connection dies before any byte of the reply; on a fresh
	 * connection of its own it never does.  The caller asks for one when a
	 * request must reach the gateway at most once per attempt (the
	 * circuit's half-open probe: tests/integration/circuit_hostile.sh).
	 */
	if (fresh_connection)
	{
		FT_SETOPT(h, CURLOPT_FRESH_CONNECT, 1L);
		FT_SETOPT(h, CURLOPT_FORBID_REUSE, 1L);
	}
	FT_SETOPT(h, CURLOPT_SSL_VERIFYPEER, ft_tls_verify ? 1L : 0L);
	FT_SETOPT(h, CURLOPT_SSL_VERIFYHOST, ft_tls_verify ? 2L : 0L);
	if (ft_ca_file != NULL && ft_ca_file[0] != '\0')
		FT_SETOPT(h, CURLOPT_CAINFO, ft_ca_file);
	FT_SETOPT(h, CURLOPT_WRITEFUNCTION, ft_http_write_cb);
	FT_SETOPT(h, CURLOPT_WRITEDATA, h);
	FT_SETOPT(h, CURLOPT_ERRORBUFFER, h->errbuf);
	FT_SETOPT(h, CURLOPT_PRIVATE, h);

	h->deaf_at_start = ft_http_deaf_us(GetCurrentTimestamp());
	mrc = curl_multi_add_handle(ft_multi, h->easy);
	if (mrc != CURLM_OK)
	{
		snprintf(errbuf, errlen, "curl_multi_add_handle failed: %s",
				 curl_multi_strerror(mrc));
		goto fail;
	}
	h->owner = owner;
	ft_busy++;
	return true;

fail:
	ft_http_put_handle(h);
	return false;
}

int
ft_http_in_flight(void)
{
	return ft_busy;
}

/*
 * Hand every ready socket of libcurl's to curl_multi_socket_action.  The
 * set is level-triggered: what is left over (more than a batch) is still
 * ready at the next wait.
 */
static void
ft_http_sockets_ready(void)
{
	int			n;
	int			running;

	n = epoll_wait(ft_epoll_fd, ft_ready, lengthof(ft_ready), 0);
	if (n < 0)
	{
		if (errno != EINTR)
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("epoll_wait() on libcurl's sockets failed: %m")));
		return;
	}
	for (int i = 0; i < n; i++)
	{
		uint32		ev = ft_ready[i].events;
		int			mask = 0;

		if (ev & (EPOLLIN | EPOLLHUP))
			mask |= CURL_CSELECT_IN;
		if (ev & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (ev & EPOLLERR)
			mask |= CURL_CSELECT_ERR;
		ft_http_check_multi(curl_multi_socket_action(ft_multi, ft_ready[i].data.fd,
													 mask, &running),
							"socket action");
	}
}

/*
 * The worker's wait point: sleep until the latch is set, a watched socket
 * is ready, libcurl's timer expires or max_wait_ms passed; then let
 * libcurl act on what happened.  Exits the process if the postmaster died.
 * Returns WL_LATCH_SET if the latch was set (the caller resets it), else 0.
 */
int
ft_http_wait(long max_wait_ms, uint32 wait_event_info)
{
	long		timeout = Max(max_wait_ms, 0);
	int			running;
	int			nevents;
	int			result = 0;

	if (ft_epoll_errno != 0)
	{
		errno = ft_epoll_errno;
		ft_epoll_errno = 0;
		ereport(WARNING,
				(errcode_for_socket_access(),
				 errmsg("could not watch a libcurl socket: %m"),
				 errdetail("A request on that socket ends at ft_orders.request_timeout.")));
	}

	if (ft_timer_deadline != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), ft_timer_deadline, &secs, &usecs);
		timeout = Min(timeout, secs * 1000 + (usecs + 999) / 1000);
	}

	if (ft_deaf_since != 0)
	{
		ft_deaf_us = ft_http_deaf_us(GetCurrentTimestamp());
		ft_deaf_since = 0;
	}
	nevents = WaitEventSetWait(ft_wait_set, timeout, ft_occurred,
							   lengthof(ft_occurred), wait_event_info);

	for (int i = 0; i < nevents; i++)
	{
		if (ft_occurred[i].events & WL_LATCH_SET)
			result |= WL_LATCH_SET;
		else if (ft_occurred[i].events & WL_SOCKET_READABLE)
			ft_http_sockets_ready();
	}

	if (ft_timer_deadline != 0 && GetCurrentTimestamp() >= ft_timer_deadline)
	{
		ft_timer_deadline = 0;
		ft_http_check_multi(curl_multi_socket_action(ft_multi, CURL_SOCKET_TIMEOUT, 0,
													 &running),
							"timeout action");
	}
	ft_deaf_since = GetCurrentTimestamp();
	return result;
}

/*
 * The value of header name in the final reply of a finished transfer (the
 * last one if repeated; libcurl trims it), or NULL.  Valid until the next
 * call or until the handle is reused.
 */
static const char *
ft_http_header(FtHttpHandle *h, const char *name)
{
	struct curl_header *hd;

	if (curl_easy_header(h->easy, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return NULL;
	if (hd->amount > 1 &&
		curl_easy_header(h->easy, name, hd->amount - 1, CURLH_HEADER, -1,
						 &hd) != CURLHE_OK)
		return NULL;
	return hd->value;
}

/* FtGatewayReply.header: reply->transport is the handle */
static const char *
ft_http_reply_header(const FtGatewayReply *reply, const char *name)
{
	return ft_http_header((FtHttpHandle *) reply->transport, name);
}

/*
 * Hand every finished transfer to callback and recycle its handle.
 * Returns the number handed over.
 */
int
ft_http_collect(FtHttpDoneCallback callback)
{
	CURLMsg    *msg;
	int			left;
	int			done = 0;

	while ((msg = curl_multi_info_read(ft_multi, &left)) != NULL)
	{
		CURL	   *easy = msg->easy_handle;
		CURLcode	result = msg->data.result;
		FtHttpHandle *h = NULL;
		FtGatewayReply reply;
		long		status = 0;
		curl_off_t	total_us = 0;
		const char *retry_after;

		if (msg->msg != CURLMSG_DONE)
			continue;

		if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &h) != CURLE_OK ||
			h == NULL)
			elog(ERROR, "libcurl handle without its request");
		if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
			status = 0;
		if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us) != CURLE_OK)
			total_us = 0;
		ft_http_check_multi(curl_multi_remove_handle(ft_multi, easy), "remove handle");

		memset(&reply, 0, sizeof(reply));
		reply.now = time(NULL);
		reply.listened_ms = Max(0.0, (double) total_us / 1000.0 -
								(double) (ft_http_deaf_us(GetCurrentTimestamp()) -
										  h->deaf_at_start) / 1000.0);
		reply.http_status = (int) status;
		reply.body = h->buf ? h->buf : "";
		reply.body_len = h->len;
		reply.header = ft_http_reply_header;
		reply.transport = h;
		retry_after = ft_http_header(h, "Retry-After");
		if (retry_after != NULL)
		{
			strlcpy(h->retry_after, retry_after, sizeof(h->retry_after));
			reply.retry_after = h->retry_after;
		}
		if (result != CURLE_OK)
		{
			if (h->too_large)
				reply.too_large = true;
			else if (h->out_of_memory)
				reply.transport_error = "out of memory while receiving the reply";
			else
				reply.transport_error = h->errbuf[0] ? h->errbuf
					: curl_easy_strerror(result);
			if (!reply.too_large)
				reply.http_status = 0;
			reply.timed_out = (result == CURLE_OPERATION_TIMEDOUT);
		}

		/* the handle keeps the reply's headers until it is reused */
		callback(h->owner, &reply, (double) total_us / 1000.0);
		ft_http_put_handle(h);
		ft_busy--;
		done++;
	}
	return done;
}

/*
 * Stop every request under way; callback sees each owner with a NULL
 * reply.  Returns the number aborted.
 */
int
ft_http_abort_all(FtHttpDoneCallback callback)
{
	int			aborted = 0;

	for (int i = 0; i < ft_nhandles; i++)
	{
		FtHttpHandle *h = ft_handles[i];
		void	   *owner = h->owner;

		if (owner == NULL)
			continue;
		ft_http_check_multi(curl_multi_remove_handle(ft_multi, h->easy), "remove handle");
		ft_http_put_handle(h);
		ft_busy--;
		if (callback)
			callback(owner, NULL, 0.0);
		aborted++;
	}
	return aborted;
}

/*
 * Free everything libcurl holds for this process.  Safe to call twice.
 */
void
ft_http_shutdown(void)
{
	if (ft_multi == NULL)
		return;
	ft_http_abort_all(NULL);
	for (int i = 0; i < ft_nhandles; i++)
	{
		curl_easy_cleanup(ft_handles[i]->easy);
		free(ft_handles[i]->buf);
		pfree(ft_handles[i]);
		ft_handles[i] = NULL;
	}
	ft_nhandles = 0;
	ft_nfree = 0;
	ft_http_check_multi(curl_multi_cleanup(ft_multi), "cleanup");
	ft_multi = NULL;
	if (ft_wait_set != NULL)
		FreeWaitEventSet(ft_wait_set);
	ft_wait_set = NULL;
	if (ft_epoll_fd >= 0)
		close(ft_epoll_fd);
	ft_epoll_fd = -1;
	curl_global_cleanup();
}
