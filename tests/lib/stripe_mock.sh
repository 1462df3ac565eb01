# stripe_mock.sh: stripe-stateful-mock (tests/stripe_mock, from the npm
# registry) for the tests of the stripe_charges provider
# (tests/integration/stripe_mock.sh, stripe_refunds.sh).
#
#   source "$(dirname "$0")/../lib/common.sh"
#   source "$(dirname "$0")/../lib/tap.sh"
#   source "$(dirname "$0")/../lib/stripe_mock.sh"
#
# Installs the mock's node modules if missing, starts it on a free loopback
# port (checked: one TAP test) and writes the secret key to a file only the
# PostgreSQL OS user reads, as an operator would keep it.  Sets MOCK_PID,
# MOCK_PORT, MOCK_URL, SK and STRIPE_KEY_FILE; gives mock_get and
# mock_charges_for, and stripe_pg_start.  Bails out if the mock cannot be started.

MOCK_DIR=$FT_ROOT/tests/stripe_mock
if [ ! -f "$MOCK_DIR/node_modules/stripe-stateful-mock/package.json" ]; then
	command -v npm >/dev/null 2>&1 || bail_out "npm is missing: run tests/setup/deps.sh"
	(cd "$MOCK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		bail_out "npm ci in tests/stripe_mock failed"
fi

node "$MOCK_DIR/server.js" --port-file "$FT_TMP/stripe_mock.port" >"$FT_TMP/stripe_mock.log" 2>&1 &
MOCK_PID=$!
FT_PIDS+=("$MOCK_PID")
MOCK_PORT=$(port_from_file "$FT_TMP/stripe_mock.port" "$FT_TMP/stripe_mock.log") ||
	bail_out "stripe mock did not start"
MOCK_URL="http://127.0.0.1:$MOCK_PORT"
SK=sk_test_ftorders

# mock API GET (JSON to stdout)
mock_get()
{
	curl -fsS -H "Authorization: Bearer $SK" "$MOCK_URL$1"
}
# charges at the mock for an order id: "N" or, with a jq filter, its result
mock_charges_for()
{
	mock_get "/v1/charges?limit=100" |
		jq -r --arg o "$1" "[.data[] | select(.metadata.order_id == \$o)] | ${2:-length}"
}

is "$(ss -Hltn "sport = :$MOCK_PORT" | awk '{print $4}' | sort -u | tr '\n' ' ')" \
	"127.0.0.1:$MOCK_PORT " "the mock listens on loopback only"

STRIPE_KEY_FILE=$FT_TMP/stripe.key
echo "$SK" >"$STRIPE_KEY_FILE"
chown "$FT_PG_USER" "$STRIPE_KEY_FILE"
chmod 600 "$STRIPE_KEY_FILE"

# stripe_pg_start [SETTING...]: the server, paying through the mock with the
# stripe_charges provider and the key file, and the SETTINGs
stripe_pg_start()
{
	pg_start "ft_orders.gateway_url = '$MOCK_URL'" \
		"ft_orders.gateway_provider = 'stripe_charges'" \
		"ft_orders.gateway_token = 'file:$STRIPE_KEY_FILE'" "$@"
}
