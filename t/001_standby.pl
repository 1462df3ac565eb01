# Workers on a streaming standby wait in state 'standby' and write nothing;
# the primary's workers pay what is placed there; the primary dies with
# requests in flight (their leases would last 30 s), the standby is
# promoted, its launcher releases those leases and its workers pay every
# order, none twice, the first within seconds of the promotion.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use FtOrders::Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);

my $K = 5;     # paid by the primary while the standby follows
my $N = 20;    # left in flight when the primary dies

my $gw      = gateway_start();
my $primary = ft_node(
	'primary',
	allows_streaming => 1,
	conf             => [
		"ft_orders.gateway_url = '$gw->{url}'",
		"ft_orders.request_timeout = '25s'",
		"ft_orders.lease_timeout = '30s'",
		"ft_orders.backoff_base = '50ms'",
		"ft_orders.backoff_max = '500ms'",
		"ft_orders.max_in_flight = 8"
	]);
ok(poll_within($primary, 20,
		"SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'idle'"),
	"the primary's two workers are idle");

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

ok( poll_within(
		$standby, 20,
		"SELECT count(*) = 2 FROM ft_orders.worker_status WHERE state = 'standby' AND pid IS NOT NULL"
	),
	"on the standby both workers show state 'standby'");

# --- the primary pays, the standby follows ------------------------------------
is(place_orders($primary, 'pp', $K), $K, "placed $K orders on the primary");
ok(poll_within($primary, 20,
		"SELECT count(*) = $K FROM ft_orders.orders WHERE status = 'paid'"),
	"the primary's workers paid $K orders");
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('ftdb',
		"SELECT count(*) FROM ft_orders.orders WHERE status = 'paid'"),
	$K, "the standby sees them paid");
is(gateway_ledger($gw)->{charges}, $K, "ledger: $K charges, by the primary");
is($standby->safe_psql('ftdb',
		"SELECT string_agg(DISTINCT state, ',') FROM ft_orders.worker_status"),
	'standby', "the standby's workers stayed in state 'standby'");

# --- the primary dies with requests in flight ---------------------------------
# lost replies: the gateway charges and holds every reply; the primary's
# workers hold their leases and pay nothing until request_timeout (25 s),
# whatever the checks below take (4 to 15 s measured under load), and the
# gateway's books are final before the standby takes over
gateway_faults($gw, '{"timeout_rate":1,"hang_ms":60000}');
is(place_orders($primary, 'sb', $N), $N, "placed $N orders on the primary");
ok(poll_within($primary, 5,
		"SELECT count(*) > 0 FROM ft_orders.outbox WHERE lease_until > now()"),
	"the primary's workers hold leases");
# insert position: the workers commit asynchronously, their leases may not
# be written yet; the WAL writer flushes (and the walsender ships) them soon
my $lsn = $primary->lsn('insert');
ok(poll_within($standby, 10, "SELECT pg_last_wal_replay_lsn() >= '$lsn'"),
	"the standby replayed everything");
is($standby->safe_psql('ftdb',
		"SELECT count(*) FROM ft_orders.orders WHERE status = 'pending'"),
	$N, "the standby sees the orders pending");
is($standby->safe_psql('ftdb',
		"SELECT string_agg(DISTINCT state, ',') FROM ft_orders.worker_status"),
	'standby', "the standby's workers still wait");

# metrics() reads the tables read-only: it works on the standby too
my $prom = $standby->safe_psql('ftdb', "SELECT ft_orders.metrics()");
my ($out, $err) = ('', '');
ok(IPC::Run::run([ 'python3', $FtOrders::Test::prom_check ], '<', \$prom, '>', \$out, '2>', \$err),
	"metrics() on the standby parses")
  or diag $err;
my ($standby_workers, $pending) = (0, '');
for (split /\n/, $prom)
{
	$standby_workers += $1 if /^ft_orders_worker_state\{[^}]*state="standby"[^}]*\}\s+(\S+)/;
	$pending = $1 if /^ft_orders_orders\{status="pending"\}\s+(\S+)/;
}
is("$standby_workers $pending", "2 $N",
	"metrics() on the standby: both workers in state standby, $N orders pending");

# --- promotion ----------------------------------------------------------------
$primary->stop('immediate');
ok(!-e $primary->data_dir . '/postmaster.pid',
	"the primary dies with requests in flight");
my $leased = $standby->safe_psql('ftdb',
	"SELECT count(*) FROM ft_orders.outbox WHERE lease_until > now()");
cmp_ok($leased, '>', 0, "the standby inherited $leased live leases");
gateway_faults($gw, undef);

my $t0 = time;
$standby->promote;
is($standby->safe_psql('ftdb', 'SELECT pg_is_in_recovery()'),
	'f', "standby promoted");
ok(poll_within($standby, 10,
		"SELECT count(*) > 0 FROM ft_orders.orders WHERE status = 'paid' AND idempotency_key LIKE 'sb-%'"),
	"the promoted standby's workers pay");
my $first_ms = int((time - $t0) * 1000);
# the launcher looks every 250 ms whether it was promoted: 0.5 s on an
# idle machine, 1.0 s measured under load; a promotion noticed late (or
# leases waited out, 30 s) takes longer than this bound
cmp_ok($first_ms, '<', 6000, "the first order is paid $first_ms ms after the promotion");
ok(poll_within($standby, 20,
		"SELECT count(*) = $K + $N FROM ft_orders.orders WHERE status = 'paid'"),
	"all $N orders are paid on the new primary");
is(log_count($standby, qr/released [0-9]+ outbox lease/), 1,
	"the launcher released the dead primary's leases");
my $ledger = gateway_ledger($gw);
is($ledger->{duplicates}, 0,        "ledger: no duplicate charges");
is($ledger->{charges},    $K + $N, "ledger: one charge per order");
ok(!$standby->log_contains(qr/terminated by signal/),
	"no process crashed on the standby");

$standby->stop;
done_testing();
