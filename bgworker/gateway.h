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
	FT_OUTCOME_RETRY,			/* transient: back off and try again */
	FT_OUTCOME_UNKNOWN,			/* look-up: the gateway has no such payment
								 * or refund; it may be sent (again) */
	FT_OUTCOME_CANCELED,		/* look-up of a canceled order: never
								 * charged (set by the worker) */
	FT_OUTCOME_ACTION_REQUIRED, /* the customer must act (3-D Secure) */
	FT_OUTCOME_REFUNDED,		/* refund: the gateway refunded */
	FT_OUTCOME_REFUND_FAILED	/* refund: refused for good */
} FtOutcome;

/* the payment_attempts.outcome text of an outcome (gateway_reply.c) */
extern const char *ft_outcome_name(FtOutcome outcome);

/*
 * What a request does (docs/reference.md, "Wire protocol"): charge an
 * order (POST, or the provider's re-check of a payment under way), look a
 * charge up (GET), send a refund (POST), look a refund up (GET) or cancel
 * a payment the customer has not completed, for a canceled order (POST).
 */
typedef enum FtRequestKind
{
	FT_REQ_CHARGE = 0,
	FT_REQ_LOOKUP,
	FT_REQ_REFUND,
	FT_REQ_REFUND_LOOKUP,
	FT_REQ_CANCEL				/* cancel an unconfirmed payment (POST) */
} FtRequestKind;

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
								 * NULL; for a refund: the charge's id */
	bool		legacy_request; /* the gateway holds this order's first
								 * request in the form sent before the
								 * payment_key was part of it (Stripe:
								 * without metadata[payment_key]); it is
								 * re-sent exactly so (see
								 * FT_LEGACY_REQUEST_NOTE) */
	bool		match_by_order_id;	/* the order's first request may have
									 * gone out without its payment_key
									 * (orders.match_by_order_id, schema
									 * 1.5; every order of an older
									 * schema): a gateway object without
									 * one may be found by its order_id */
	/* refunds only */
	int64		refund_id;		/* 0: not a refund */
	const char *refund_key;		/* uuid text, the refund's Idempotency-Key */
	bool		refund_key_in_metadata; /* send the refund_key as metadata
										 * too (refunds created from schema
										 * 1.5 on: an older refund's key
										 * may be at the gateway with the
										 * parameters of its first request) */
	int64		refund_amount;	/* minor units */
	const char *refund_ref;		/* the gateway's id of the refund, once
								 * known (refunds.gateway_refund_id), or
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
	double		listened_ms;	/* of the request's time, how long the worker
								 * was waiting on its sockets: the reply
								 * did not wait for the worker then */

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
	/* FT_OUTCOME_ACTION_REQUIRED: JSON text of the gateway's next_action,
	 * and the client secret, or NULL */
	char	   *next_action;
	char	   *client_secret;
	/* the gateway refused the request: its Idempotency-Key was first used
	 * with other parameters (Stripe: 400 idempotency_error) */
	bool		idempotency_refused;
	/* a look-up found payments of other orders (or amounts) and ignored
	 * them; error says which: the worker logs it */
	bool		ignored_foreign;
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
	 * Optional: one more header line for every request ("Name: value"),
	 * or NULL for none; read at each request (it may follow a setting).
	 */
	const char *(*request_header) (void);
	/*
	 * Optional: a palloc'd path (appended to gateway_url) to GET instead of
	 * POSTing a new payment, when req->pending_ref names a payment the
	 * gateway is still working on; NULL: POST as usual.
	 */
	char	   *(*recheck_path) (const FtPaymentRequest *req);

	/*
	 * Reconciliation (docs/reference.md, "Reconciliation"): a palloc'd path
	 * to GET that finds the order's payment, or NULL when the provider
	 * cannot look it up; its reply is classified by classify_lookup, which
	 * says FT_OUTCOME_UNKNOWN when the gateway confirms it has none.  req
	 * is the order looked up (payment_key, order_id, amount_minor,
	 * currency): a search result that is not its payment is ignored.
	 */
	char	   *(*lookup_path) (const FtPaymentRequest *req);
	void		(*classify_lookup) (const FtGatewayReply *reply,
									const FtPaymentRequest *req,
									FtClassification *result);

	/*
	 * Refunds: POST refund_path with build_refund's body under the
	 * refund_key; classify_refund says REFUNDED, REFUND_FAILED or RETRY.
	 * refund_lookup_path / classify_refund_lookup as for charges.
	 */
	const char *refund_path;
	void		(*build_refund) (const FtPaymentRequest *req, StringInfo body);
	void		(*classify_refund) (const FtGatewayReply *reply,
									FtClassification *result);
	char	   *(*refund_lookup_path) (const FtPaymentRequest *req);
	void		(*classify_refund_lookup) (const FtGatewayReply *reply,
										   FtClassification *result);

	/*
	 * Optional, for an order whose cancellation was requested while its
	 * charge is unconfirmed at the gateway (outcome unknown or waiting for
	 * the customer): a palloc'd path to POST (empty body) that cancels the
	 * payment named by req->pending_ref, or NULL (no such id, or no cancel
	 * in this provider: the look-up is sent instead).  classify_cancel says
	 * CANCELED when the gateway canceled it, or what the payment turned out
	 * to be (PAID, RETRY while under way).
	 */
	char	   *(*cancel_path) (const FtPaymentRequest *req);
	void		(*classify_cancel) (const FtGatewayReply *reply,
									FtClassification *result);
} FtProvider;

/*
 * How an order's request is known to have first gone out in its legacy
 * form (FtPaymentRequest.legacy_request): a charge request of the order
 * was refused because its key was first used with other parameters, and
 * recorded with this error (payment_attempts.error starts with it).  The
 * claim looks for such a row (outbox_claim.c); the worker records it
 * (ft_job_finish, worker_job.c).  No quotes: it is also part of an SQL literal.
 */
#define FT_LEGACY_REQUEST_NOTE \
	"idempotency_error: the first request of this order went out without its payment_key"

/* appended to the payment_key: the Idempotency-Key of a cancel request */
#define FT_CANCEL_KEY_SUFFIX	":cancel"

/* a top-level field of a JSON reply, read by ft_gateway_json_fields */
typedef struct FtJsonField
{
	const char *name;
	bool		raw;			/* the JSON text of an object or array value,
								 * else a string value */
	char	  **value;			/* set to the value, or NULL */
} FtJsonField;

/* gateway_generic.c */
extern const FtProvider ft_provider_generic;

/* gateway_reply.c: what every provider shares */
extern int	ft_gateway_parse_retry_after(const char *value, time_t now);
struct JsonSemAction;
extern char *ft_gateway_clean_text(const char *s, size_t maxlen);
extern void ft_gateway_set_retry(FtClassification *result, char *error);
extern void ft_gateway_lookup_retry(const FtGatewayReply *reply,
									FtClassification *result);
extern bool ft_gateway_classify_transport(const FtGatewayReply *reply,
										  FtClassification *result);
extern bool ft_gateway_parse_json(const char *body, size_t len,
								  const struct JsonSemAction *actions,
								  void *state, size_t state_size);
extern const char *ft_gateway_reply_header(const FtGatewayReply *reply,
										   const char *name);
extern bool ft_gateway_json_fields(const char *body, size_t len,
								   const FtJsonField *fields, int nfields);

/* gateway_stripe.c: PaymentIntents and the older Charges API */
extern const FtProvider ft_provider_stripe;
extern const FtProvider ft_provider_stripe_charges;

/* gateway_token.c: the gateway token in effect, "" for none (never logged) */
extern const char *ft_gateway_token_in_effect(void);

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
						  const char *content_type, const char *extra_header,
						  const char *body, size_t body_len,
						  bool fresh_connection,
						  char *errbuf, size_t errlen);
extern int	ft_http_in_flight(void);
extern int	ft_http_wait(long max_wait_ms, uint32 wait_event_info);
extern int	ft_http_collect(FtHttpDoneCallback callback);
extern int	ft_http_abort_all(FtHttpDoneCallback callback);

#endif							/* FT_GATEWAY_H */
