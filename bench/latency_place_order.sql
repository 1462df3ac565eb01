-- pgbench script for the latency benchmark (bench/run.sh, -R 1000): one
-- place_order per transaction, key lat-<run>-<client>-<n>, n counting this
-- client's transactions from 1 (pgbench keeps a client's variables from one
-- transaction to the next), so that the log line "c t ..." of client c (t
-- counts from 1 too) names key lat-<run>-c-t
\set n :n + 1
SELECT order_id FROM ft_orders.place_order('lat-' || :run || '-' || :client_id || '-' || :n, 'cust-lat', 1000, 'EUR');
