# A stopping worker hands its unfinished work back.
#  - pg_terminate_backend() of one payment worker: it stops cleanly (no
#    crash restart) and the launcher starts a new one about a second later;
#  - a fast shutdown with requests in flight: the workers wait up to a
#    second, record what completed, release the leases of the rest (so the
#    launcher finds none at the next start), giving their attempts back
#    (they do not count towards max_attempts), and every order is paid
#    once after the restart.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use FtOrders::Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $N = 30;

my $gw   = gateway_start();
my $node = ft_node(
	'main',
	conf => [
		"ft_orders.gateway_url = '$gw->{url}'",
		"ft_orders.request_timeout = '15s'",
		"ft_orders.lease_timeout = '30s'",
		"ft_orders.backoff_base = '50ms'",
		"ft_orders.backoff_max = '500ms'"
	]);
poll_within($node, 20,
	"SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'")
  or BAIL_OUT("workers did not start");

# --- terminate one worker ------------------------------------------------------
my $old = $node->safe_psql('ftdb',
	"SELECT pid FROM ft_orders.worker_status WHERE worker_id = 1");
is($node->safe_psql('ftdb', "SELECT pg_terminate_backend($old)"),
	't', "pg_terminate_backend of payment worker 1");
ok( poll_within(
		$node, 10,
		"SELECT pid IS NOT NULL AND pid <> $old AND state = 'idle' FROM ft_orders.worker_status WHERE worker_id = 1"
	),
	"the launcher started a new payment worker 1");
is(log_count($node, qr/terminated by signal/), 0, "no crash restart");

# --- fast shutdown mid-flight --------------------------------------------------
# lost replies: the gateway charges and holds every reply, so the
# requests stay in flight until request_timeout (15 s), whatever the
# checks below take; a stop that waited for them would take longer than
# the bound below
gateway_faults($gw, '{"timeout_rate":1,"hang_ms":60000}');
is(place_orders($node, 'sd', $N), $N, "placed $N orders");
ok(poll_within($node, 5, "SELECT sum(in_flight) > 0 FROM ft_orders.worker_status"),
	"requests are in flight");
# at the next start the workers stay idle: the released events can be looked at
$node->safe_psql('ftdb', "ALTER SYSTEM SET ft_orders.gateway_url = ''");
my $t0 = time;
$node->stop('fast');
ok(!-e $node->data_dir . '/postmaster.pid', "fast shutdown");
my $ms = int((time - $t0) * 1000);
# the workers' second of grace and the shutdown: 1.3-1.7 s measured under load
cmp_ok($ms, '<', 8000, "the workers did not hold the shutdown up ($ms ms)");
cmp_ok(log_count($node, qr/released [0-9]+ unfinished payment/),
	'>=', 1, "stopping workers released their leases");
gateway_faults($gw, undef);
$node->start;
is( $node->safe_psql('ftdb',
		"SELECT count(*) > 0 AND bool_and(attempts = 0) FROM ft_orders.outbox"),
	't',
	"the released events' attempts were given back (a stop is not the order's failure)");
$node->safe_psql('ftdb',
	"ALTER SYSTEM SET ft_orders.gateway_url = '$gw->{url}'");
$node->reload;
ok(poll_within($node, 30,
		"SELECT count(*) = $N FROM ft_orders.orders WHERE status = 'paid'"),
	"after the restart all $N orders are paid");
is(log_count($node, qr/outbox lease\(s\) of stopped payment workers/),
	0, "the launcher found no lease left behind");
my $ledger = gateway_ledger($gw);
is($ledger->{duplicates}, 0,  "ledger: no duplicate charges");
is($ledger->{charges},    $N, "ledger: one charge per order");
is(log_count($node, qr/terminated by signal/), 0, "no process crashed");

$node->stop;
done_testing();
