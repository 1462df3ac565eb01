#!/bin/bash
# stripe_refunds.sh: refunds of the stripe_charges provider against
# stripe-stateful-mock (tests/stripe_mock), which implements POST
# /v1/refunds on charges with Stripe's own checks: a partial refund, the
# rest, and the charge's amount_refunded at the mock after each; the
# refund's id kept in refunds.gateway_refund_id; the refund_key sent as
# Idempotency-Key (a replay of the same refund is not a second one).
# PaymentIntents are not implemented by the mock (their refunds, by
# payment_intent, are covered against the fake gateway's shape only by
# the request they build; see docs/providers.md).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
source "$(dirname "$0")/../lib/stripe_mock.sh"

stripe_pg_start "ft_orders.request_timeout = '2s'" "ft_orders.lease_timeout = '4s'" \
	"ft_orders.backoff_base = '50ms'" "ft_orders.backoff_max = '300ms'" ||
	bail_out "server did not start"

status_of() { psql_q "SELECT status || ':' || refunded_minor FROM ft_orders.orders WHERE order_id = $1"; }
settled() { wait_until "SELECT count(*) = 0 FROM ft_orders.refunds WHERE status = 'pending'" 30; }

o=$(psql_q "SELECT order_id FROM ft_orders.place_order('sref-1', 'cust', 2500, 'EUR', '[]', 'tok_visa')")
wait_until "SELECT status = 'paid' FROM ft_orders.orders WHERE order_id = $o" 30
ok $? "the order is paid at the mock"
ch=$(psql_q "SELECT payment_id FROM ft_orders.orders WHERE order_id = $o")
like "$ch" '^ch_' "its payment_id is the mock's charge ($ch)"

r1=$(psql_q "SELECT ft_orders.refund_order($o, 1000, 'first')")
settled ; ok $? "a partial refund of 1000 settled"
is "$(status_of "$o")" "partially_refunded:1000" "the order is partially_refunded"
re1=$(psql_q "SELECT gateway_refund_id FROM ft_orders.refunds WHERE refund_id = $r1")
like "$re1" '^re_' "the refund carries the mock's refund id ($re1)"
is "$(mock_get "/v1/charges/$ch" | jq -r .amount_refunded)" "1000" "the mock's charge shows 1000 refunded"
rk=$(psql_q "SELECT refund_key FROM ft_orders.refunds WHERE refund_id = $r1")
is "$(mock_get "/v1/refunds/$re1" | jq -r '.amount, .charge, .metadata.refund_id, .metadata.refund_key' | tr '\n' ' ')" "1000 $ch $r1 $rk " \
	"the mock's refund: amount, charge, our refund id and refund_key (1.5)"

# the same refund sent again under its key is a replay at the mock, not a second refund
body="charge=$ch&amount=1000&metadata%5Brefund_id%5D=$r1&metadata%5Brefund_key%5D=$rk"
is "$(curl -fsS -H "Authorization: Bearer $SK" -H "Idempotency-Key: $rk" -d "$body" "$MOCK_URL/v1/refunds" | jq -r .id)" \
	"$re1" "the refund's body under its refund_key replays the same refund"
is "$(mock_get "/v1/charges/$ch" | jq -r .amount_refunded)" "1000" "still 1000 refunded at the mock"

psql_q "SELECT ft_orders.refund_order($o)" >/dev/null
settled ; ok $? "the rest (1500) settled"
is "$(status_of "$o")" "refunded:2500" "the order is refunded"
is "$(mock_get "/v1/charges/$ch" | jq -r '.amount_refunded, .refunded' | tr '\n' ' ')" "2500 true " \
	"the mock's charge is refunded in full"
is "$(psql_q "SELECT string_agg(request || ':' || outcome, ',' ORDER BY started_at) FROM ft_orders.payment_attempts WHERE order_id = $o")" \
	"charge:paid,refund:refunded,refund:refunded" "one charge and two refund requests"
is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"
is "$(grep -cE 'ERROR|FATAL' "$PG_LOG")" "0" "no ERROR or FATAL in the log"

done_testing
