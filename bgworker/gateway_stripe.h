/*-------------------------------------------------------------------------
 *
 * gateway_stripe.h
 *	  What the files of the Stripe providers share (gateway_stripe.c:
 *	  charges and replies; gateway_stripe_json.c: reading a reply;
 *	  gateway_stripe_reconcile.c: look-ups, refunds and cancels): the
 *	  parsed fields of a reply and the helpers that build and classify.
 *	  Internal to those files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GATEWAY_STRIPE_H
#define FT_GATEWAY_STRIPE_H

#include "gateway.h"

#define FT_STRIPE_ID_MAX	255
#define FT_STRIPE_REASON_MAX	120

typedef enum FtStripeField
{
	FT_SF_NONE = 0,
	FT_SF_ID,
	FT_SF_OBJECT,
	FT_SF_STATUS,
	FT_SF_ERROR,				/* the top-level "error" object */
	FT_SF_ERR_TYPE,
	FT_SF_ERR_CODE,
	FT_SF_ERR_DECLINE_CODE,
	FT_SF_ERR_MESSAGE,
	FT_SF_ELEM_ID,				/* "id" of an element of "data" */
	FT_SF_ELEM_STATUS,
	FT_SF_ERR_PI_ID,			/* error.payment_intent.id */
	FT_SF_ERR_PI_STATUS,
	FT_SF_HAS_MORE,				/* a list's "has_more" */
	FT_SF_ELEM_AMOUNT,
	FT_SF_ELEM_CURRENCY,
	FT_SF_ELEM_META_KEY,		/* metadata.payment_key of an element */
	FT_SF_ELEM_META_ORDER		/* metadata.order_id of an element */
} FtStripeField;

/*
 * The elements of a search result that are kept (Stripe's largest page is
 * 100; the look-up asks for that many).
 */
#define FT_STRIPE_ELEMS_MAX	100

/* one element of a search result, as sent (NULL: absent) */
typedef struct FtStripeElem
{
	char	   *id;
	char	   *status;
	char	   *amount;			/* the JSON number, as text */
	char	   *currency;
	char	   *meta_payment_key;
	char	   *meta_order_id;
} FtStripeElem;

typedef struct FtStripeFields
{
	int			depth;
	bool		top_is_object;
	bool		in_error;		/* inside the top-level "error" object */
	int			error_depth;
	bool		next_is_error;	/* the value of top-level "error" is next */
	FtStripeField current;
	char	   *id;
	char	   *object;
	char	   *status;
	bool		has_error;
	char	   *err_type;
	char	   *err_code;
	char	   *err_decline_code;
	char	   *err_message;
	/* error.payment_intent: the object a refused request was about */
	bool		next_is_err_pi;
	bool		in_err_pi;
	char	   *err_pi_id;
	char	   *err_pi_status;
	/* a list or search result: its "data" array and "has_more" */
	bool		next_is_data;
	bool		in_data;
	bool		has_more;
	int			ndata;			/* elements in "data" */
	int			nelems;			/* of which kept in elems */
	FtStripeElem *elem;			/* element being read, or NULL */
	bool		next_is_elem_meta;
	bool		in_elem_meta;	/* inside the element's "metadata" */
	FtStripeElem elems[FT_STRIPE_ELEMS_MAX];
} FtStripeFields;

/* gateway_stripe_json.c */
extern bool ft_stripe_json_read_reply(const FtGatewayReply *reply,
									  FtClassification *result,
									  FtStripeFields *f);

/* gateway_stripe.c */
extern void ft_stripe_form_add(StringInfo body, const char *name, const char *value);
extern bool ft_stripe_valid_id(const char *s);
extern char *ft_stripe_id_path(const char *id, const char *prefix,
							   const char *base, const char *suffix);
extern char *ft_stripe_reason(int status, const FtStripeFields *f);
extern void ft_stripe_classify_object(int status, const FtStripeFields *f,
									  FtClassification *result);
extern void ft_stripe_classify_reply(const FtGatewayReply *reply,
									 FtClassification *result);

/* gateway_stripe_reconcile.c */
extern char *ft_stripe_intent_lookup(const FtPaymentRequest *req);
extern void ft_stripe_classify_lookup(const FtGatewayReply *reply,
									  const FtPaymentRequest *req,
									  FtClassification *result);
extern void ft_stripe_build_refund(const FtPaymentRequest *req, StringInfo body);
extern void ft_stripe_classify_refund(const FtGatewayReply *reply,
									  FtClassification *result);
extern char *ft_stripe_refund_lookup(const FtPaymentRequest *req);
extern void ft_stripe_classify_refund_lookup(const FtGatewayReply *reply,
											 FtClassification *result);
extern char *ft_stripe_intent_cancel(const FtPaymentRequest *req);
extern void ft_stripe_classify_cancel(const FtGatewayReply *reply,
									  FtClassification *result);

#endif							/* FT_GATEWAY_STRIPE_H */
