/*-------------------------------------------------------------------------
 *
 * classify_harness.c
 *	  Stand-alone checks of the pure parts of the payment workers, built
 *	  with AddressSanitizer and UBSan by ../classify_asan.sh: the generic
 *	  provider (request body, reply classification, Retry-After), the
 *	  stripe providers' request and look-up (metadata[payment_key], search
 *	  results of several databases on one account) and the backoff
 *	  computation.
 *
 * gateway_reply.c, gateway_generic.c and backoff.c are compiled unchanged against the
 * server headers and linked with the frontend libpgcommon (palloc,
 * StringInfo, the JSON parser) plus the backend stand-ins of
 * fuzz/classify_common.c, which also holds the reply table's invariants
 * checked here and by the libFuzzer target.  The frontend JSON parser has no stack-depth check, so nesting
 * is kept to a depth the process stack holds; the backend's
 * "stack depth limit exceeded" path is covered by the integration tests.
 *
 * Output is TAP.  After the table of known replies comes a fuzz loop of
 * random and mutated bodies: any crash or sanitizer report fails the run,
 * and every verdict must respect the reply table's invariants.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "classify_common.h"
#include "gateway_json.h"
#include "guc.h"
#include "worker.h"

/* --- TAP ----------------------------------------------------------------- */
static int	tap_n = 0;
static int	tap_failed = 0;

static void
tap(bool cond, const char *desc, const char *got)
{
	tap_n++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap_n, desc);
	if (!cond)
	{
		printf("#   got: %s\n", got ? got : "(null)");
		tap_failed++;
	}
}

static FtClassification
classify(int status, const char *body, const char *retry_after,
		 const char *transport_error, bool too_large)
{
	FtClassification c;

	ft_classify(status, body, body ? strlen(body) : 0, retry_after,
				transport_error, too_large, &c);
	return c;
}

typedef struct Case
{
	int			status;
	const char *body;
	const char *retry_after;
	const char *transport_error;
	const char *expect;			/* "outcome[:error][/retry_after_ms]" */
} Case;

static const Case cases[] = {
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"pay_1\"}", NULL, NULL, "paid"},
	{201, "{\"payment_id\":\"p\",\"status\":\"succeeded\",\"x\":{\"status\":\"declined\"}}", NULL, NULL, "paid"},
	{200, "{\"status\":\"declined\",\"decline_code\":\"card_declined\"}", NULL, NULL, "declined:declined: card_declined"},
	{402, "{\"status\":\"declined\",\"decline_code\":\"insufficient_funds\"}", NULL, NULL, "declined:declined: insufficient_funds"},
	{402, "not json", NULL, NULL, "declined:declined"},
	{400, "{\"error\":\"invalid_request\",\"message\":\"bad\"}", NULL, NULL, "failed:HTTP 400 invalid_request: bad"},
	{422, "", NULL, NULL, "failed:HTTP 422"},
	{401, "{\"error\":\"unauthorized\"}", NULL, NULL, "retry:HTTP 401 unauthorized"},
	{403, NULL, NULL, NULL, "retry:HTTP 403"},
	{409, NULL, "2", NULL, "retry:HTTP 409/2000"},
	{429, "{\"error\":\"rate\"}", "  7 ", NULL, "retry:HTTP 429 rate/7000"},
	{503, NULL, "-5", NULL, "retry:HTTP 503/-1"},
	{503, NULL, "1.5", NULL, "retry:HTTP 503/-1"},
	{503, NULL, "garbage", NULL, "retry:HTTP 503/-1"},
	{503, NULL, "99999999999999999999", NULL, "retry:HTTP 503/2147483000"},
	{503, NULL, "Tue, 14 Nov 2023 22:13:30 GMT", NULL, "retry:HTTP 503/10000"},
	{503, NULL, "Mon, 01 Jan 2001 00:00:00 GMT", NULL, "retry:HTTP 503/0"},
	{500, "<html>oops</html>", NULL, NULL, "retry:HTTP 500"},
	{200, "<html>oops</html>", NULL, NULL, "retry:HTTP 200 malformed reply"},
	{200, "", NULL, NULL, "retry:HTTP 200 malformed reply"},
	{200, "[1,2]", NULL, NULL, "retry:HTTP 200 malformed reply"},
	{200, "\"succeeded\"", NULL, NULL, "retry:HTTP 200 malformed reply"},
	{200, "{\"status\":\"succeeded\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"a\\u0001b\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"a\\u0000b\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"pay_1\",\"message\":\"\\u4e2d\\u0000\\ud800\\u00e9\"}", NULL, NULL, "paid"},
	{200, "{\"st\\u0061tus\":\"succ\\u0065eded\",\"payment_\\u0069d\":\"pay\\u005f1\"}", NULL, NULL, "paid"},
	{200, "{\"status\":\"succeeded\\u4e2d\",\"payment_id\":\"pay_1\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"pay_\xc3\xa9\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{402, "{\"decline_code\":\"\\u4e2d\"}", NULL, NULL, "declined:declined: ?"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":42}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"pending\",\"payment_id\":\"p\"}", NULL, NULL, "retry:HTTP 200 unexpected reply"},
	{200, "{\"status\":\"succeeded\",\"payment_id\":\"p\"} trailing", NULL, NULL, "retry:HTTP 200 malformed reply"},
	{302, NULL, NULL, NULL, "retry:HTTP 302"},
	{404, NULL, NULL, NULL, "retry:HTTP 404"},
	{0, NULL, NULL, "Operation timed out after 1000 milliseconds", "retry:Operation timed out after 1000 milliseconds"},
	{0, NULL, NULL, "bad\x01\xff bytes", "retry:bad?? bytes"},
};

static void
check_cases(void)
{
	for (size_t i = 0; i < lengthof(cases); i++)
	{
		const Case *k = &cases[i];
		FtClassification c = classify(k->status, k->body, k->retry_after,
									  k->transport_error, false);
		char		got[512];
		char		desc[600];

		snprintf(got, sizeof(got), "%s%s%s", ft_outcome_name(c.outcome),
				 c.error ? ":" : "", c.error ? c.error : "");
		if (strchr(k->expect, '/'))
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "/%d", c.retry_after_ms);
		snprintf(desc, sizeof(desc), "HTTP %d %.60s -> %s", k->status,
				 k->body ? k->body : k->transport_error ? k->transport_error : "", k->expect);
		tap(strcmp(got, k->expect) == 0, desc, got);
	}
	{
		FtClassification c = classify(200, "{\"status\":\"succeeded\",\"payment_id\":\"pay_9\"}",
									  NULL, NULL, false);

		tap(c.payment_id && strcmp(c.payment_id, "pay_9") == 0 && !c.transient,
			"paid keeps the payment_id and is no failure", c.payment_id);
		c = classify(200, "{}", NULL, NULL, true);
		tap(c.outcome == FT_OUTCOME_RETRY && c.transient && strstr(c.error, "too large"),
			"an oversize reply is a transient failure", c.error);
		c = classify(401, NULL, NULL, NULL, false);
		tap(c.auth_problem && c.transient, "401 is an auth problem and counts for the circuit", c.error);
		c = classify(402, NULL, NULL, NULL, false);
		tap(!c.transient, "a decline is no failure for the circuit", c.error);
	}
}

/* ft_json_storable and ft_json_next_action: what of a reply may be stored */
static void
check_storable(void)
{
	static const struct
	{
		const char *json;
		bool		utf8;
		const char *why;		/* NULL: storable */
	}			cases[] = {
		{"{\"type\":\"redirect_to_url\",\"redirect_to_url\":{\"url\":\"https://x/\\u0041\"}}", false, NULL},
		{"[1, -2.5e10, true, null, \"\\\"\\/\\n\"]", false, NULL},
		{"{\"a\":\"\\u00e9\"}", true, NULL},
		{"{\"a\":\"\\u00e9\"}", false, "an escape the database cannot hold"},
		{"{\"a\":\"\xc3\xa9\"}", true, NULL},
		{"{\"a\":\"\xc3\xa9\"}", false, "not ASCII"},
		{"{\"a\":\"\xff\xfe\"}", true, "not valid UTF-8"},
		{"{\"a\":\"x\\u0000\"}", true, "an escape the database cannot hold"},
		{"{\"a\":\"\\ud83d\\ude00\"}", true, NULL},
		{"{\"a\":\"\\ud83d\"}", true, "an unpaired surrogate"},
		{"{\"a\":\"\\ude00\"}", true, "an unpaired surrogate"},
		{"{\"a\":1e999999}", true, "a number out of range"},
		{"{\"a\":1e300}", true, NULL},
		{"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", true, "nested too deep"},
		{"{\"a\":1,}", true, "not JSON"},
		{"{\"a\":1} x", true, "not JSON"},
		{"", true, "not JSON"},
	};
	char	   *big = malloc(FT_NEXT_ACTION_MAX + 16);
	const char *why;
	char	   *stored;

	for (size_t i = 0; i < lengthof(cases); i++)
	{
		bool		ok = ft_json_storable(cases[i].json, strlen(cases[i].json),
										  cases[i].utf8, FT_NEXT_ACTION_MAX,
										  FT_NEXT_ACTION_DEPTH, &why);
		char		desc[200];

		snprintf(desc, sizeof(desc), "next_action %.60s (%s): %s", cases[i].json,
				 cases[i].utf8 ? "UTF8" : "LATIN1",
				 cases[i].why ? cases[i].why : "stored");
		tap(cases[i].why == NULL ? ok && why == NULL
			: !ok && why != NULL && strcmp(why, cases[i].why) == 0,
			desc, why ? why : "stored");
	}
	memset(big, 'A', FT_NEXT_ACTION_MAX + 16);
	memcpy(big, "{\"a\":\"", 6);
	memcpy(big + FT_NEXT_ACTION_MAX + 16 - 3, "\"}", 3);
	stored = ft_json_next_action(big, true);
	tap(strcmp(stored, "{\"type\":\"unavailable\",\"reason\":\"too large\"}") == 0,
		"a next_action over the cap becomes the marker", stored);
	big[FT_NEXT_ACTION_MAX - 3] = '"';
	big[FT_NEXT_ACTION_MAX - 2] = '}';
	big[FT_NEXT_ACTION_MAX - 1] = '\0';
	stored = ft_json_next_action(big, true);
	tap(strcmp(stored, big) == 0, "a next_action at the cap is kept", NULL);
	tap(ft_json_next_action(NULL, true) == NULL, "no next_action, none stored", NULL);
	free(big);
}

static void
check_body(void)
{
	FtPaymentRequest req = {
		.order_id = 42,
		.payment_key = "0b7d5a4e-1111-2222-3333-444455556666",
		.customer_id = "cu\"st\\\n",
		.amount_minor = 99999999999,
		.currency = "EUR",
		.payment_method = NULL,
		.items_json = "[{\"sku\": \"a\"}]",
	};
	StringInfoData body;
	initStringInfo(&body);
	ft_provider_generic.build_request(&req, &body);
	tap(strcmp(body.data,
			   "{\"order_id\":42,\"payment_key\":\"0b7d5a4e-1111-2222-3333-444455556666\","
			   "\"customer_id\":\"cu\\\"st\\\\\\u000a\",\"amount_minor\":99999999999,"
			   "\"currency\":\"EUR\",\"payment_method\":null,\"items\":[{\"sku\": \"a\"}]}") == 0,
		"request body follows the wire protocol and escapes strings", body.data);
	req.payment_method = "pm_card_visa";
	ft_provider_generic.build_request(&req, &body);
	tap(strstr(body.data, "\"payment_method\":\"pm_card_visa\"") != NULL,
		"payment_method is a string when set", body.data);
}

/* a reply of status with body, as the transport hands it over */
static FtGatewayReply
fake_reply(int status, const char *body)
{
	FtGatewayReply r;

	memset(&r, 0, sizeof(r));
	r.http_status = status;
	r.body = body;
	r.body_len = strlen(body);
	r.now = FT_CLASSIFY_NOW;
	return r;
}

/* a reply to a Stripe look-up, classified for order req (NULL: a charge) */
static FtClassification
stripe_lookup(int status, const char *body, const FtPaymentRequest *req)
{
	FtGatewayReply r = fake_reply(status, body);
	FtClassification c;

	memset(&c, 0, sizeof(c));
	if (req == NULL)
		ft_provider_stripe.classify_reply(&r, &c);
	else
		ft_provider_stripe.classify_lookup(&r, req, &c);
	return c;
}

/*
 * Stripe replies with hostile values: read as ASCII in every encoding, and
 * a status that is not one (an array, an escape, a non-word) makes the
 * reply unreadable (retried), never a permanent failure
 */
static void
check_stripe_hostile(void)
{
	static const struct
	{
		const char *body;
		FtOutcome	outcome;
		const char *desc;
	}			cases[] = {
		{"{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"status\":\"succeeded\",\"description\":\"\\u4e2d\\u0000\"}",
		FT_OUTCOME_PAID, "stripe: \\u4e2d and \\u0000 in a description change nothing"},
		{"{\"\\u0069d\":\"pi_1\",\"st\\u0061tus\":\"succ\\u0065eded\"}",
		FT_OUTCOME_PAID, "stripe: names and values written as escapes read the same"},
		{"{\"id\":\"pi_1\",\"status\":\"succeeded\",\"status\":[\"a\",1]}",
		FT_OUTCOME_RETRY, "stripe: a status that is an array is unreadable, its element is not the status"},
		{"{\"id\":\"pi_1\",\"status\":\"succeeded\",\"status\":{\"status\":\"canceled\"}}",
		FT_OUTCOME_RETRY, "stripe: a status that is an object is unreadable"},
		{"{\"id\":\"pi_1\",\"status\":\"succeeded\\u0000\"}",
		FT_OUTCOME_RETRY, "stripe: a status with \\u0000 is unreadable, not an unexpected state"},
		{"{\"id\":\"pi_1\",\"status\":\"pay_\xff\xfe\"}",
		FT_OUTCOME_RETRY, "stripe: a status that is not a word is unreadable"},
		{"{\"id\":\"pi_\\u4e2d\",\"status\":\"succeeded\"}",
		FT_OUTCOME_RETRY, "stripe: an id with \\u4e2d is unusable"},
	};

	for (size_t i = 0; i < lengthof(cases); i++)
	{
		FtClassification c = stripe_lookup(200, cases[i].body, NULL);

		tap(c.outcome == cases[i].outcome, cases[i].desc, ft_outcome_name(c.outcome));
	}
}

/*
 * The stripe provider and several databases on one account: the request
 * names the order by metadata[payment_key] (not in the legacy form), the
 * look-up searches on it, and a search result settles the order only from
 * its own intent, with its amount and currency.
 */
static void
check_stripe(void)
{
	FtPaymentRequest req = {
		.order_id = 1,
		.payment_key = "0b7d5a4e-1111-2222-3333-444455556666",
		.customer_id = "cust-b",
		.amount_minor = 999,
		.currency = "EUR",
		.payment_method = "pm_card_visa",
	};
	StringInfoData body;
	char	   *path;
	FtClassification c;
	const char *other =
		"{\"object\":\"search_result\",\"has_more\":false,\"data\":[{\"id\":\"pi_a\","
		"\"object\":\"payment_intent\",\"amount\":1700,\"currency\":\"eur\",\"status\":\"succeeded\","
		"\"metadata\":{\"order_id\":\"1\",\"payment_key\":\"9a9a9a9a-1111-2222-3333-444455556666\"}}]}";
	const char *ours =
		"{\"object\":\"search_result\",\"data\":[{\"id\":\"pi_a\",\"amount\":1700,\"currency\":\"eur\","
		"\"status\":\"succeeded\",\"metadata\":{\"order_id\":\"1\",\"payment_key\":\"9a9a9a9a-1111-2222-3333-444455556666\"}},"
		"{\"id\":\"pi_b\",\"amount\":999,\"currency\":\"eur\",\"status\":\"succeeded\","
		"\"metadata\":{\"order_id\":\"1\",\"payment_key\":\"0B7D5A4E-1111-2222-3333-444455556666\"}}],\"has_more\":false}";
	const char *wrong_amount =
		"{\"object\":\"search_result\",\"data\":[{\"id\":\"pi_b\",\"amount\":998,\"currency\":\"eur\","
		"\"status\":\"succeeded\",\"metadata\":{\"payment_key\":\"0b7d5a4e-1111-2222-3333-444455556666\"}}]}";
	const char *legacy =
		"{\"object\":\"search_result\",\"data\":[{\"id\":\"pi_old\",\"amount\":999,\"currency\":\"eur\","
		"\"status\":\"succeeded\",\"metadata\":{\"order_id\":\"1\"}}]}";
	const char *legacy_usd =
		"{\"object\":\"search_result\",\"data\":[{\"id\":\"pi_old\",\"amount\":999,\"currency\":\"usd\","
		"\"status\":\"succeeded\",\"metadata\":{\"order_id\":\"1\"}}]}";
	const char *more =
		"{\"object\":\"search_result\",\"has_more\":true,\"data\":[{\"id\":\"pi_a\",\"amount\":1700,"
		"\"currency\":\"eur\",\"status\":\"succeeded\",\"metadata\":{\"payment_key\":\"9a9a9a9a-1111-2222-3333-444455556666\"}}]}";

	initStringInfo(&body);
	ft_provider_stripe.build_request(&req, &body);
	tap(strstr(body.data, "metadata%5Bpayment_key%5D=0b7d5a4e-1111-2222-3333-444455556666&") != NULL,
		"stripe: the request carries metadata[payment_key]", body.data);
	req.legacy_request = true;
	ft_provider_stripe.build_request(&req, &body);
	tap(strcmp(body.data,
			   "amount=999&currency=eur&metadata%5Border_id%5D=1&metadata%5Bcustomer_id%5D=cust-b"
			   "&payment_method=pm_card_visa&confirm=true&automatic_payment_methods%5Benabled%5D=true"
			   "&automatic_payment_methods%5Ballow_redirects%5D=never") == 0,
		"stripe: an order first sent without metadata[payment_key] is re-sent exactly so", body.data);
	ft_provider_stripe_charges.build_request(&req, &body);
	tap(strstr(body.data, "payment_key") == NULL, "stripe_charges: the legacy form too", body.data);
	req.legacy_request = false;
	ft_provider_stripe_charges.build_request(&req, &body);
	tap(strstr(body.data, "metadata%5Bpayment_key%5D=") != NULL,
		"stripe_charges: the request carries metadata[payment_key]", body.data);

	/* an order whose first request carried its payment_key (1.4 on) */
	path = ft_provider_stripe.lookup_path(&req);
	tap(strcmp(path, "/v1/payment_intents/search?query=metadata%5B%27payment_key%27%5D%3A%27"
			   "0b7d5a4e-1111-2222-3333-444455556666%27&limit=100") == 0,
		"stripe: the look-up of an order placed from 1.4 on searches its payment_key only", path);
	c = stripe_lookup(200, legacy, &req);
	tap(c.outcome == FT_OUTCOME_UNKNOWN && c.ignored_foreign && c.payment_id == NULL,
		"stripe: an intent without payment_key, with the order's id, amount and currency, does not settle an order placed from 1.4 on",
		c.error);

	/* an order whose first request may have gone out without it */
	req.match_by_order_id = true;
	path = ft_provider_stripe.lookup_path(&req);
	tap(strcmp(path, "/v1/payment_intents/search?query=metadata%5B%27payment_key%27%5D%3A%27"
			   "0b7d5a4e-1111-2222-3333-444455556666%27%20OR%20metadata%5B%27order_id%27%5D%3A%271%27"
			   "&limit=100") == 0,
		"stripe: the look-up of an order placed before 1.4 searches the payment_key, or the order_id", path);

	c = stripe_lookup(200, other, &req);
	tap(c.outcome == FT_OUTCOME_UNKNOWN && c.ignored_foreign && c.payment_id == NULL &&
		strstr(c.error, "pi_a") != NULL,
		"stripe: another order's payment_key with the same order_id is ignored: unknown", c.error);
	c = stripe_lookup(200, ours, &req);
	tap(c.outcome == FT_OUTCOME_PAID && c.payment_id != NULL && strcmp(c.payment_id, "pi_b") == 0,
		"stripe: the intent with the order's payment_key settles it", c.payment_id);
	c = stripe_lookup(200, wrong_amount, &req);
	tap(c.outcome == FT_OUTCOME_UNKNOWN && c.ignored_foreign,
		"stripe: the order's payment_key with another amount: ignored", c.error);
	c = stripe_lookup(200, legacy, &req);
	tap(c.outcome == FT_OUTCOME_PAID && c.payment_id != NULL && strcmp(c.payment_id, "pi_old") == 0,
		"stripe: an intent without payment_key, the order's id, amount and currency settles it", c.error);
	c = stripe_lookup(200, legacy_usd, &req);
	tap(c.outcome == FT_OUTCOME_UNKNOWN && c.ignored_foreign,
		"stripe: an intent without payment_key in another currency: ignored", c.error);
	req.order_id = 2;
	c = stripe_lookup(200, legacy, &req);
	tap(c.outcome == FT_OUTCOME_UNKNOWN && c.ignored_foreign,
		"stripe: an intent without payment_key of another order_id: ignored", c.error);
	req.order_id = 1;
	c = stripe_lookup(200, more, &req);
	tap(c.outcome == FT_OUTCOME_RETRY,
		"stripe: nothing of the order's on an incomplete result: retried, not unknown", c.error);

	/* refunds carry their refund_key as metadata when created from 1.5 on */
	{
		FtPaymentRequest rr = req;

		rr.pending_ref = "pi_b";
		rr.refund_id = 7;
		rr.refund_key = "5e5e5e5e-1111-2222-3333-444455556666";
		rr.refund_amount = 500;
		ft_provider_stripe.build_refund(&rr, &body);
		tap(strcmp(body.data, "payment_intent=pi_b&amount=500&metadata%5Brefund_id%5D=7") == 0,
			"stripe: a refund created before 1.5 is sent as first sent, without its refund_key", body.data);
		rr.refund_key_in_metadata = true;
		ft_provider_stripe.build_refund(&rr, &body);
		tap(strcmp(body.data, "payment_intent=pi_b&amount=500&metadata%5Brefund_id%5D=7"
				   "&metadata%5Brefund_key%5D=5e5e5e5e-1111-2222-3333-444455556666") == 0,
			"stripe: a refund created from 1.5 on carries metadata[refund_key]", body.data);
	}

	/* hostile search results: any verdict, no invalid access */
	{
		const char *pieces[] = {"{", "}", "[", "]", ",", ":", "\"data\"", "\"metadata\"",
			"\"id\"", "\"pi_x\"", "\"amount\"", "999", "\"currency\"", "\"eur\"",
			"\"payment_key\"", "\"order_id\"", "\"1\"", "\"status\"", "\"succeeded\"",
		"\"object\"", "\"search_result\"", "\"has_more\"", "true", "null", "-1e99"};
		int			n = (int) (sizeof(pieces) / sizeof(pieces[0]));

		for (int i = 0; i < 20000; i++)
		{
			resetStringInfo(&body);
			appendStringInfoString(&body, "{\"object\":\"search_result\",\"data\":[");
			for (int k = random() % 40; k > 0; k--)
				appendStringInfoString(&body, pieces[random() % n]);
			(void) stripe_lookup(200, body.data, &req);
		}
		tap(true, "stripe: 20000 hostile search results classified", NULL);
	}
}

/* the Stripe-Should-Retry value of stripe_reply's replies */
static const char *stripe_should_retry;

static const char *
stripe_header(const FtGatewayReply *reply, const char *name)
{
	return strcmp(name, "Stripe-Should-Retry") == 0 ? stripe_should_retry : NULL;
}

/* a reply to a Stripe charge, with Stripe-Should-Retry: should_retry */
static FtClassification
stripe_reply(int status, const char *body, const char *should_retry,
			 const char *retry_after)
{
	FtGatewayReply r = fake_reply(status, body);
	FtClassification c;

	memset(&c, 0, sizeof(c));
	r.retry_after = retry_after;
	r.header = stripe_header;
	stripe_should_retry = should_retry;
	ft_provider_stripe.classify_reply(&r, &c);
	return c;
}

/*
 * Stripe-Should-Retry: false ends the order at once on a 409 (the key in
 * use by a concurrent request) and a 429 alike, as on a 5xx; true retries
 * a 400; without it the status decides.  Retry-After may be a date.
 */
static void
check_stripe_should_retry(void)
{
	static const char err409[] = "{\"error\":{\"type\":\"idempotency_error\",\"code\":\"idempotency_key_in_use\"}}";
	static const char err429[] = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"rate_limit\"}}";
	static const char err400[] = "{\"error\":{\"type\":\"invalid_request_error\",\"code\":\"parameter_missing\"}}";
	static const struct
	{
		int			status;
		const char *body;
		const char *should_retry;
		FtOutcome	outcome;
	}			k[] = {
		{409, err409, NULL, FT_OUTCOME_RETRY},
		{409, err409, "false", FT_OUTCOME_FAILED},
		{429, err429, NULL, FT_OUTCOME_RETRY},
		{429, err429, "false", FT_OUTCOME_FAILED},
		{429, err429, "FALSE", FT_OUTCOME_FAILED},
		{503, err429, "false", FT_OUTCOME_FAILED},
		{409, err409, "true", FT_OUTCOME_RETRY},
		{400, err400, "true", FT_OUTCOME_RETRY},
		{400, err400, NULL, FT_OUTCOME_FAILED},
	};
	FtClassification c;

	for (size_t i = 0; i < lengthof(k); i++)
	{
		char		desc[160];

		c = stripe_reply(k[i].status, k[i].body, k[i].should_retry, NULL);
		snprintf(desc, sizeof(desc), "stripe: HTTP %d with Stripe-Should-Retry: %s -> %s",
				 k[i].status, k[i].should_retry ? k[i].should_retry : "(none)",
				 ft_outcome_name(k[i].outcome));
		tap(c.outcome == k[i].outcome &&
			(k[i].outcome != FT_OUTCOME_FAILED || !c.transient) &&
			(k[i].should_retry == NULL || k[i].outcome != FT_OUTCOME_FAILED ||
			 strstr(c.error, "Stripe-Should-Retry: false") != NULL),
			desc, c.error);
	}
	c = stripe_reply(429, err429, NULL, "Tue, 14 Nov 2023 22:13:30 GMT");
	tap(c.outcome == FT_OUTCOME_RETRY && c.retry_after_ms == 10000,
		"stripe: a 429's Retry-After as an HTTP date (10 s ahead)", c.error);
	c = stripe_reply(429, err429, NULL, "3");
	tap(c.outcome == FT_OUTCOME_RETRY && c.retry_after_ms == 3000,
		"stripe: a 429's Retry-After in seconds", c.error);
}

static void
check_backoff(void)
{
	bool		ok = true;
	char		got[128] = "";

	ft_backoff_base_ms = 1000;
	ft_backoff_max_ms = 600000;
	for (int i = 0; i < 10000 && ok; i++)
	{
		int			attempt = 1 + i % 12;
		int			d = ft_backoff_delay_ms(attempt, -1);
		int64		ceiling = Min((int64) 1000 << (attempt - 1), 600000);

		if (d < 0 || d > ceiling)
		{
			ok = false;
			snprintf(got, sizeof(got), "attempt %d delay %d", attempt, d);
		}
	}
	tap(ok, "full jitter stays within [0, min(max, base*2^(attempt-1))]", got);

	ft_backoff_base_ms = INT_MAX;
	ft_backoff_max_ms = INT_MAX;
	ok = true;
	for (int attempt = -5; attempt < 2000 && ok; attempt += 7)
	{
		int			d = ft_backoff_delay_ms(attempt, INT_MAX);

		if (d < 0)
		{
			ok = false;
			snprintf(got, sizeof(got), "attempt %d delay %d", attempt, d);
		}
	}
	tap(ok, "no overflow with huge base, max, attempt and Retry-After", got);

	ft_backoff_base_ms = 50;
	ft_backoff_max_ms = 500;
	tap(ft_backoff_delay_ms(1, 5000) == 500, "Retry-After is capped at backoff_max", NULL);
	tap(ft_backoff_delay_ms(1, 400) >= 400, "Retry-After raises the delay", NULL);
}

/* random bytes, or a valid reply with bytes flipped, inserted or cut */
static void
fuzz(long iterations, unsigned seed)
{
	static const char *seeds[] = {
		"{\"status\":\"succeeded\",\"payment_id\":\"pay_1\"}",
		"{\"status\":\"declined\",\"decline_code\":\"card_declined\"}",
		"{\"error\":\"invalid_request\",\"message\":\"amount rejected\"}",
		"{\"a\":[1,2,{\"b\":null}],\"status\":\"succeeded\",\"payment_id\":\"\\ud83d\\ude00\"}",
	};
	static const int statuses[] = {0, 100, 200, 201, 204, 299, 302, 400, 401, 402,
	403, 404, 409, 422, 429, 500, 502, 503, 599, 999, -1};
	char	   *buf = malloc(FT_REPLY_MAX_BYTES + 1);
	char		ra[FT_RETRY_AFTER_LEN];
	long		bad = 0;
	char		got[256] = "";

	srandom(seed);
	for (long i = 0; i < iterations; i++)
	{
		int			status = statuses[random() % lengthof(statuses)];
		size_t		len;
		FtClassification c;

		if (random() % 3 == 0)
		{
			len = random() % 512;
			for (size_t j = 0; j < len; j++)
				buf[j] = (char) (random() % 256);
		}
		else if (random() % 20 == 0)
		{
			/* deep nesting (bounded: the frontend parser has no depth check) */
			size_t		depth = random() % 2000;

			len = 0;
			for (size_t j = 0; j < depth; j++)
				buf[len++] = (random() % 2) ? '[' : '{';
		}
		else
		{
			const char *s = seeds[random() % lengthof(seeds)];
			int			edits = random() % 4;

			len = strlen(s);
			memcpy(buf, s, len);
			for (int e = 0; e < edits && len > 0; e++)
			{
				size_t		pos = random() % len;

				switch (random() % 3)
				{
					case 0:
						buf[pos] = (char) (random() % 256);
						break;
					case 1:
						len = pos;
						break;
					case 2:
						if (len < 1000)
						{
							memmove(buf + pos + 1, buf + pos, len - pos);
							buf[pos] = "{}[]\",:\\u0"[random() % 10];
							len++;
						}
						break;
				}
			}
		}
		buf[len] = '\0';
		for (size_t j = 0; j < sizeof(ra) - 1; j++)
			ra[j] = (char) (random() % 2 ? '0' + random() % 10 : random() % 256);
		ra[random() % sizeof(ra)] = '\0';

		{
			const char *why;

			ft_classify(status, buf, len,	/* len may count NUL bytes */
						(random() % 2) ? ra : NULL, NULL, false, &c);
			(void) ft_json_next_action(buf, random() % 2);
			why = ft_classify_violation(status, NULL, false, &c);
			if (why != NULL)
			{
				bad++;
				snprintf(got, sizeof(got), "HTTP %d -> %s: %s", status,
						 ft_outcome_name(c.outcome), why);
			}
		}
	}
	free(buf);
	{
		char		desc[128];

		snprintf(desc, sizeof(desc), "%ld fuzzed replies classified within the reply table's invariants",
				 iterations);
		tap(bad == 0, desc, got);
	}
}

int
main(int argc, char **argv)
{
	long		iterations = argc > 1 ? atol(argv[1]) : 100000;

	check_cases();
	check_storable();
	check_body();
	check_stripe();
	check_stripe_hostile();
	check_stripe_should_retry();
	check_backoff();
	fuzz(iterations, (unsigned) time(NULL));
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
