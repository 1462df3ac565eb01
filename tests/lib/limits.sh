# limits.sh: helpers for the tests of the adaptive in-flight limit
# (sourced after common.sh).

# limit_range PAID [SECONDS]: sample gateway_status.concurrency_limit every
# 0.2 s until PAID orders are paid (or SECONDS, default 90, passed); prints
# "least greatest" of the samples
limit_range()
{
	local want=$1 deadline=$(($(date +%s) + ${2:-90})) l p lo="" hi=""
	while [ "$(date +%s)" -le "$deadline" ]; do
		read -r l p < <(psql_q "SELECT concurrency_limit, (SELECT count(*) FROM ft_orders.orders WHERE status = 'paid') FROM ft_orders.gateway_status" | tr '|' ' ')
		{ [ -z "$lo" ] || [ "$l" -lt "$lo" ]; } && lo=$l
		{ [ -z "$hi" ] || [ "$l" -gt "$hi" ]; } && hi=$l
		[ "$p" -eq "$want" ] && break
		sleep 0.2
	done
	echo "$lo $hi"
}
