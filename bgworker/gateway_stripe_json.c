/*-------------------------------------------------------------------------
 *
 * gateway_stripe_json.c
 *	  Stripe's replies read with PostgreSQL's own JSON parser into
 *	  FtStripeFields (gateway_stripe.h): the top-level "id", "object" and
 *	  "status", the "type", "code", "decline_code", "message" and
 *	  "payment_intent" of a top-level "error" object, and the elements of
 *	  a list or search result ("data", "has_more").
 *
 * A state machine over the parser's semantic actions, a pure function of
 * the reply like the classifiers that read its fields (gateway_stripe.c,
 * gateway_stripe_reconcile.c): whatever the gateway sends, the result is
 * fields (or none), never an ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"

#include "compat.h"
#include "gateway.h"
#include "gateway_stripe.h"

static FtJsonResult
stripe_json_object_start(void *state)
{
	FtStripeFields *f = (FtStripeFields *) state;

	/* a field read as a string whose value is an object is not read */
	f->current = FT_SF_NONE;

	if (f->in_data && f->depth == 2)
	{
		/* an element of "data": kept while there is room */
		f->ndata++;
		f->elem = NULL;
		if (f->nelems < FT_STRIPE_ELEMS_MAX)
			f->elem = &f->elems[f->nelems++];
	}
	else if (f->in_data && f->depth == 3 && f->next_is_elem_meta)
		f->in_elem_meta = true;
	f->next_is_elem_meta = false;
	if (f->depth == 0)
		f->top_is_object = true;
	else if (f->depth == 1 && f->next_is_error)
	{
		f->in_error = true;
		f->has_error = true;
		f->error_depth = 2;
	}
	else if (f->depth == 2 && f->in_error && f->next_is_err_pi)
		f->in_err_pi = true;
	f->next_is_error = false;
	f->next_is_err_pi = false;
	f->depth++;
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_object_end(void *state)
{
	FtStripeFields *f = (FtStripeFields *) state;

	f->depth--;
	if (f->in_err_pi && f->depth < 3)
		f->in_err_pi = false;
	if (f->in_error && f->depth < f->error_depth)
		f->in_error = false;
	if (f->in_elem_meta && f->depth <= 3)
		f->in_elem_meta = false;
	if (f->in_data && f->depth == 2)
		f->elem = NULL;
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_array_start(void *state)
{
	FtStripeFields *f = (FtStripeFields *) state;

	/* nor one whose value is an array: its elements are not the field */
	f->current = FT_SF_NONE;

	if (f->depth == 1 && f->next_is_data)
		f->in_data = true;
	f->next_is_error = false;
	f->next_is_data = false;
	f->next_is_elem_meta = false;
	f->depth++;
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_array_end(void *state)
{
	FtStripeFields *f = (FtStripeFields *) state;

	f->depth--;
	if (f->depth == 1)
		f->in_data = false;
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_field_start(void *state, char *fname, bool isnull)
{
	FtStripeFields *f = (FtStripeFields *) state;

	f->current = FT_SF_NONE;
	f->next_is_error = false;
	f->next_is_data = false;
	f->next_is_err_pi = false;
	f->next_is_elem_meta = false;
	if (fname == NULL)
		return FT_JSON_OK;
	if (f->in_data && f->depth == 3)
	{
		if (strcmp(fname, "id") == 0)
			f->current = FT_SF_ELEM_ID;
		else if (strcmp(fname, "status") == 0)
			f->current = FT_SF_ELEM_STATUS;
		else if (strcmp(fname, "amount") == 0)
			f->current = FT_SF_ELEM_AMOUNT;
		else if (strcmp(fname, "currency") == 0)
			f->current = FT_SF_ELEM_CURRENCY;
		else if (strcmp(fname, "metadata") == 0)
			f->next_is_elem_meta = true;
	}
	else if (f->in_elem_meta && f->depth == 4)
	{
		if (strcmp(fname, "payment_key") == 0)
			f->current = FT_SF_ELEM_META_KEY;
		else if (strcmp(fname, "order_id") == 0)
			f->current = FT_SF_ELEM_META_ORDER;
	}
	else if (f->depth == 1)
	{
		/* the last occurrence counts, whatever its value */
		if (strcmp(fname, "id") == 0)
		{
			f->current = FT_SF_ID;
			f->id = NULL;
		}
		else if (strcmp(fname, "object") == 0)
		{
			f->current = FT_SF_OBJECT;
			f->object = NULL;
		}
		else if (strcmp(fname, "status") == 0)
		{
			f->current = FT_SF_STATUS;
			f->status = NULL;
		}
		else if (strcmp(fname, "error") == 0)
			f->next_is_error = true;
		else if (strcmp(fname, "data") == 0)
			f->next_is_data = true;
		else if (strcmp(fname, "has_more") == 0)
			f->current = FT_SF_HAS_MORE;
	}
	else if (f->depth == 2 && f->in_error)
	{
		if (strcmp(fname, "type") == 0)
			f->current = FT_SF_ERR_TYPE;
		else if (strcmp(fname, "code") == 0)
			f->current = FT_SF_ERR_CODE;
		else if (strcmp(fname, "decline_code") == 0)
			f->current = FT_SF_ERR_DECLINE_CODE;
		else if (strcmp(fname, "message") == 0)
			f->current = FT_SF_ERR_MESSAGE;
		else if (strcmp(fname, "payment_intent") == 0)
			f->next_is_err_pi = true;
	}
	else if (f->depth == 3 && f->in_err_pi)
	{
		if (strcmp(fname, "id") == 0)
			f->current = FT_SF_ERR_PI_ID;
		else if (strcmp(fname, "status") == 0)
			f->current = FT_SF_ERR_PI_STATUS;
	}
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_field_end(void *state, char *fname, bool isnull)
{
	FtStripeFields *f = (FtStripeFields *) state;

	f->current = FT_SF_NONE;
	f->next_is_error = false;
	f->next_is_err_pi = false;
	return FT_JSON_OK;
}

static FtJsonResult
stripe_json_scalar(void *state, char *token, JsonTokenType tokentype)
{
	FtStripeFields *f = (FtStripeFields *) state;

	f->next_is_error = false;
	f->next_is_data = false;
	f->next_is_err_pi = false;
	f->next_is_elem_meta = false;
	if (f->current == FT_SF_HAS_MORE)
		f->has_more = (tokentype == JSON_TOKEN_TRUE);
	else if (f->current == FT_SF_ELEM_AMOUNT && f->elem != NULL &&
			 tokentype == JSON_TOKEN_NUMBER)
		f->elem->amount = token;
	if (tokentype != JSON_TOKEN_STRING || token == NULL)
	{
		f->current = FT_SF_NONE;
		return FT_JSON_OK;
	}
	switch (f->current)
	{
		case FT_SF_ID:
			f->id = token;
			break;
		case FT_SF_OBJECT:
			f->object = token;
			break;
		case FT_SF_STATUS:
			f->status = token;
			break;
		case FT_SF_ERR_TYPE:
			f->err_type = token;
			break;
		case FT_SF_ERR_CODE:
			f->err_code = token;
			break;
		case FT_SF_ERR_DECLINE_CODE:
			f->err_decline_code = token;
			break;
		case FT_SF_ERR_MESSAGE:
			f->err_message = token;
			break;
		case FT_SF_ELEM_ID:
			if (f->elem)
				f->elem->id = token;
			break;
		case FT_SF_ELEM_STATUS:
			if (f->elem)
				f->elem->status = token;
			break;
		case FT_SF_ELEM_CURRENCY:
			if (f->elem)
				f->elem->currency = token;
			break;
		case FT_SF_ELEM_META_KEY:
			if (f->elem)
				f->elem->meta_payment_key = token;
			break;
		case FT_SF_ELEM_META_ORDER:
			if (f->elem)
				f->elem->meta_order_id = token;
			break;
		case FT_SF_ERR_PI_ID:
			f->err_pi_id = token;
			break;
		case FT_SF_ERR_PI_STATUS:
			f->err_pi_status = token;
			break;
		case FT_SF_ERROR:
		case FT_SF_HAS_MORE:
		case FT_SF_ELEM_AMOUNT:
		case FT_SF_NONE:
			break;
	}
	f->current = FT_SF_NONE;
	return FT_JSON_OK;
}

/* the semantic actions that fill FtStripeFields */
static const JsonSemAction stripe_json_actions = {
	.object_start = stripe_json_object_start,
	.object_end = stripe_json_object_end,
	.array_start = stripe_json_array_start,
	.array_end = stripe_json_array_end,
	.object_field_start = stripe_json_field_start,
	.object_field_end = stripe_json_field_end,
	.scalar = stripe_json_scalar,
};

/*
 * The start of every Stripe classifier: returns false when the transport
 * already classified the reply (result is final), else true with the
 * body's fields in *f.  A body that is not usable JSON leaves *f empty:
 * top_is_object false, every string NULL.
 */
bool
ft_stripe_json_read_reply(const FtGatewayReply *reply,
						  FtClassification *result, FtStripeFields *f)
{
	if (ft_gateway_classify_transport(reply, result))
		return false;
	(void) ft_gateway_parse_json(reply->body, reply->body_len,
								 &stripe_json_actions, f, sizeof(*f));
	return true;
}
