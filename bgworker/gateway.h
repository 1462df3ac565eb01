/*-------------------------------------------------------------------------
 *
 * gateway.h
 *	  The payment gateway seen from a payment worker: wire-protocol
 *	  providers (request body, reply classification) and the libcurl multi
 *	  transport that carries their requests.
 *
 * A provider is a pure translation layer: it builds a request body from an
 * order and turns a reply (status, headers, body) into an outcome.  It
 * never touches the database or shared memory, so a fuzzer can drive
 * classify_reply directly.  The transport (gateway_http.c) knows nothing
 * about orders; it moves bytes and reports what came back.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GATEWAY_H
#define FT_GATEWAY_H

#include <time.h>

#include "lib/stringinfo.h"

/* replies larger than this are cut off and treated as transient failures */
#define FT_REPLY_MAX_BYTES		(64 * 1024)
/* Retry-After header value kept (longer values are garbage anyway) */
#define FT_RETRY_AFTER_LEN		64

typedef enum FtOutcome
{
	FT_OUTCOME_PAID = 0,
	FT_OUTCOME_DECLINED,		/* permanent refusal */
	FT_OUTCOME_FAILED,			/* non-retryable: dead letter at once */
	FT_OUTCOME_RETRY			/* transient: back off and try again */
} FtOutcome;

/* The order fields a request is built from. */
typedef struct FtPaymentRequest
{
	int64		order_id;
	const char *payment_key;	/* uuid text, also the Idempotency-Key */
	const char *customer_id;
	int64		amount_minor;
	const char *currency;
	const char *payment_method; /* NULL: JSON null */
	const char *items_json;		/* a JSON array, as stored */
	const char *pending_ref;	/* orders.payment_id while still pending
								 * (a provider's reference to re-check), or
								 * NULL */
} FtPaymentRequest;

/* What came back for one request, as the transport saw it. */
typedef struct FtGatewayReply
{
	int			http_status;	/* 0: no HTTP reply at all */
	const char *transport_error;	/* non-NULL: timeout, connect, TLS... */
	bool		timed_out;		/* the transport error is request_timeout */
	bool		too_large;		/* body cut off at FT_REPLY_MAX_BYTES */
	const char *retry_after;	/* Retry-After header value, or NULL */
	const char *body;			/* NUL-terminated; may contain anything */
	size_t		body_len;
	time_t		now;			/* reference for an HTTP-date Retry-After */

	/*
	 * Any other header of the reply, for a provider's own headers: use
	 * ft_gateway_reply_header().  NULL when there was no reply to ask.
	 */
	const char *(*header) (const struct FtGatewayReply *reply,
						   const char *name);
	void	   *transport;		/* the transport's state for header() */
} FtGatewayReply;

/* The verdict on one reply.  Strings are palloc'd, printable ASCII. */
typedef struct FtClassification
{
	FtOutcome	outcome;
	bool		transient;		/* counts as a failure for the circuit */
	bool		auth_problem;	/* 401/403: the operator must act */
	int			retry_after_ms; /* -1: no usable Retry-After */
	char	   *payment_id;		/* paid; or, with FT_OUTCOME_RETRY, the
								 * gateway's reference to re-check later
								 * (kept in orders.payment_id while pending) */
	char	   *error;			/* short reason, NULL when paid */
} FtClassification;

typedef struct FtProvider
{
	const char *path;			/* appended to ft_orders.gateway_url */
	void		(*build_request) (const FtPaymentRequest *req, StringInfo body);
	void		(*classify_reply) (const FtGatewayReply *reply,
								   FtClassification *result);
	/* request Content-Type; NULL: application/json */
	const char *content_type;
	/*
	 * Optional: a palloc'd path (appended to gateway_url) to GET instead of
	 * POSTing a new payment, when req->pending_ref names a payment the
	 * gateway is still working on; NULL: POST as usual.
	 */
	char	   *(*recheck_path) (const FtPaymentRequest *req);
} FtProvider;

/* gateway_generic.c */
extern const FtProvider ft_provider_generic;
extern int	ft_parse_retry_after(const char *value, time_t now);
struct JsonSemAction;
extern const char *ft_outcome_name(FtOutcome outcome);
extern char *ft_gateway_clean_text(const char *s, size_t maxlen);
extern void ft_gateway_set_retry(FtClassification *result, char *error);
extern bool ft_gateway_classify_transport(const FtGatewayReply *reply,
										  FtClassification *result);
extern bool ft_gateway_parse_json(const char *body, size_t len,
								  struct JsonSemAction *sem);
extern const char *ft_gateway_reply_header(const FtGatewayReply *reply,
										   const char *name);

/* gateway_stripe.c: PaymentIntents and the older Charges API */
extern const FtProvider ft_provider_stripe;
extern const FtProvider ft_provider_stripe_charges;

/*
 * gateway_http.c: the libcurl multi transport.  One per worker process.
 * Requests carry an opaque owner pointer that comes back on completion;
 * reply is NULL when the request was aborted (ft_http_abort_all).
 */
typedef void (*FtHttpDoneCallback) (void *owner, const FtGatewayReply *reply,
									double latency_ms);

extern void ft_http_init(void);
extern void ft_http_shutdown(void);
extern bool ft_http_start(void *owner, const char *url, const char *payment_key,
						  const char *content_type,
						  const char *body, size_t body_len,
						  bool fresh_connection,
						  char *errbuf, size_t errlen);
extern int	ft_http_in_flight(void);
extern int	ft_http_wait(long max_wait_ms, uint32 wait_event_info);
extern int	ft_http_collect(FtHttpDoneCallback callback);
extern int	ft_http_abort_all(FtHttpDoneCallback callback);

#endif							/* FT_GATEWAY_H */
