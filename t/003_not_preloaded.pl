# ft_orders refuses to load unless it is in shared_preload_libraries, with
# an ERROR and a hint (as pg_cron and pg_net do), and the server keeps
# running: CREATE EXTENSION ft_orders and LOAD 'ft_orders' fail with
# SQLSTATE 55000, the message and the hint, the session and the server
# survive, and nothing of the extension is created.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use FtOrders::Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ft_node('main', preload => 0);

my ($out, $err);
$node->psql(
	'postgres',
	"\\set VERBOSITY verbose\nCREATE EXTENSION ft_orders;\nSELECT 'session alive';",
	stdout        => \$out,
	stderr        => \$err,
	on_error_stop => 0);
like($err,
	qr/ERROR:  55000: ft_orders can only be loaded via shared_preload_libraries/,
	"CREATE EXTENSION without preload: ERROR 55000 with the message");
like($err,
	qr/HINT:  Add ft_orders to shared_preload_libraries in postgresql.conf and restart the server\./,
	"... and the hint");
like($out, qr/session alive/, "... the session goes on (an ERROR, not a FATAL)");

$node->psql('postgres', "\\set VERBOSITY verbose\nLOAD 'ft_orders';",
	stderr => \$err);
like($err,
	qr/ERROR:  55000: ft_orders can only be loaded via shared_preload_libraries/,
	"LOAD 'ft_orders' without preload: the same ERROR");

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'"),
	0, "no extension was created");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_namespace WHERE nspname = 'ft_orders'"),
	0, "no ft_orders schema was left behind");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_settings WHERE name LIKE 'ft_orders.%'"),
	0, "no ft_orders setting was defined");
ok(!$node->log_contains(qr/FATAL|terminated by signal/),
	"no FATAL, no crash in the server log");

$node->stop;
done_testing();
