# FtOrders::Test: what the TAP tests in t/ share on top of PostgreSQL's
# PostgreSQL::Test::Cluster: a server with ft_orders preloaded, the fake
# gateway (tests/fake_gateway) on a free port, orders placed in a batch,
# bounded polls and log counts.
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use FtOrders::Test;
package FtOrders::Test;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP qw(decode_json);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(ft_node gateway_start gateway_stop gateway_faults
  gateway_ledger place_orders poll_within log_count);

my $root = abs_path(dirname(__FILE__) . '/../..');
our $gateway_bin = $ENV{FT_GATEWAY_BIN}
  // "$root/tests/fake_gateway/fake_gateway";
our $prom_check = "$root/tests/lib/prom_check.py";

my @gateways;    # pids of the gateways started here, stopped at the end

# ft_node(NAME, allows_streaming => 0|1, preload => 0|1, conf => [LINES]):
# initdb and start a server; unless preload => 0, with ft_orders in
# shared_preload_libraries, ft_orders.database = 'ftdb' and database ftdb
# holding the extension
sub ft_node
{
	my ($name, %p) = @_;
	my $preload = $p{preload} // 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $p{allows_streaming} // 0);
	my @conf;
	# room for the launcher, the workers and the test's sessions (init
	# shrinks both for a server that streams)
	push @conf, "shared_buffers = 16MB", "max_connections = 30"
	  if $p{allows_streaming};
	push @conf, "shared_preload_libraries = 'ft_orders'",
	  "ft_orders.database = 'ftdb'"
	  if $preload;
	push @conf, @{ $p{conf} // [] };
	$node->append_conf('postgresql.conf', join("\n", @conf)) if @conf;
	$node->start;
	if ($preload)
	{
		$node->safe_psql('postgres', 'CREATE DATABASE ftdb');
		$node->safe_psql('ftdb',     'CREATE EXTENSION ft_orders');
	}
	return $node;
}

# gateway_start(ARGS...): the fake gateway on 127.0.0.1 and a free port,
# its output in tmp_check/log/gateway.log; returns { pid, url }
sub gateway_start
{
	my @args = @_;
	plan skip_all => "the fake gateway is not built ($gateway_bin): make fake_gateway"
	  unless -x $gateway_bin;
	my $dir      = PostgreSQL::Test::Utils::tempdir();
	my $portfile = "$dir/gateway.port";
	my $log      = "$PostgreSQL::Test::Utils::log_path/gateway.log";
	my $pid      = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec($gateway_bin, '--listen', '127.0.0.1', '--port', '0',
			'--port-file', $portfile, @args)
		  or POSIX::_exit(127);
	}
	push @gateways, $pid;
	for (1 .. 200)
	{
		if (-s $portfile)
		{
			my $port = slurp_file($portfile);
			chomp $port;
			note "fake gateway pid $pid on port $port";
			return { pid => $pid, url => "http://127.0.0.1:$port" };
		}
		last if waitpid($pid, WNOHANG) == $pid;
		usleep(50_000);
	}
	BAIL_OUT("the fake gateway did not start:\n" . slurp_file($log));
}

# gateway_stop(GW): stop it by its pid (TERM, then KILL after 5 s)
sub gateway_stop
{
	my ($gw) = @_;
	_stop_pid($gw->{pid});
	@gateways = grep { $_ != $gw->{pid} } @gateways;
	return;
}

sub _stop_pid
{
	my ($pid) = @_;
	kill 'TERM', $pid;
	for (1 .. 50)
	{
		return if waitpid($pid, WNOHANG) == $pid;
		usleep(100_000);
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
	return;
}

END
{
	# whatever way the test ends (a die included)
	local $?;
	_stop_pid($_) for @gateways;
}

my $http = HTTP::Tiny->new(timeout => 10);

# gateway_faults(GW, JSON): set faults; JSON undef clears them
sub gateway_faults
{
	my ($gw, $json) = @_;
	my $res =
	  defined $json
	  ? $http->request('POST', "$gw->{url}/faults",
		{ headers => { 'Content-Type' => 'application/json' }, content => $json })
	  : $http->request('DELETE', "$gw->{url}/faults");
	croak "faults: $res->{status} $res->{content}" unless $res->{success};
	return;
}

# gateway_ledger(GW): GET /ledger as a hash
sub gateway_ledger
{
	my ($gw) = @_;
	my $res = $http->get("$gw->{url}/ledger");
	croak "ledger: $res->{status} $res->{content}" unless $res->{success};
	return decode_json($res->{content});
}

# place_orders(NODE, PREFIX, N): N orders at once, keys PREFIX-1 .. PREFIX-N,
# customer cust, 101 .. 100+N minor units in EUR
sub place_orders
{
	my ($node, $prefix, $n) = @_;
	return $node->safe_psql('ftdb',
		"SELECT count(*) FROM generate_series(1, $n) g, "
		  . "LATERAL ft_orders.place_order('$prefix-' || g, 'cust', 100 + g, 'EUR')"
	);
}

# poll_within(NODE, SECONDS, SQL): poll_query_until on ftdb, giving up
# after about SECONDS instead of PostgreSQL's default of minutes
sub poll_within
{
	my ($node, $secs, $sql) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $secs;
	return $node->poll_query_until('ftdb', $sql);
}

# log_count(NODE, REGEXP): how many times REGEXP matches the server log
sub log_count
{
	my ($node, $re) = @_;
	my @m = (slurp_file($node->logfile) =~ m/$re/g);
	return scalar @m;
}

1;
