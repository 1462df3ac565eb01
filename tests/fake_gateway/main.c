/*-------------------------------------------------------------------------
 *
 * main.c
 *	  Command line, daemon start and clean shutdown of the fake payment
 *	  gateway (docs/reference.md, "Fake gateway").
 *
 *	  fake_gateway [--listen 127.0.0.1] [--port N] [--port-file FILE]
 *				   [--pid-file FILE] [--hang-ms N]
 *
 * Only loopback addresses (127.x.x.x) and 198.18.0.0/15 (network
 * namespaces of tests/partition) are accepted.  SIGTERM and SIGINT are
 * blocked in every thread and taken by sigwait() in the main thread, which
 * then resumes all delayed connections (delay.c) and stops the daemon.
 *
 * tests/fake_gateway/main.c
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gateway.h"
#include "faults.h"
#include "webhooks.h"

/* CLOCK_REALTIME in microseconds, as stored in first_received_us. */
int64_t
ft_gw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * libmicrohttpd's error log, minus the line it writes for every connection
 * we close on purpose (down, lost replies).
 */
static void
main_log(void *cls, const char *fmt, va_list ap)
{
	char		line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (strstr(line, "Application reported internal error") == NULL)
		fputs(line, stderr);
}

/* Write text to path through a temporary file and rename(). */
static bool
main_write_file(const char *path, const char *text)
{
	char		tmp[4096];
	FILE	   *fp;
	bool		ok;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >=
		(int) sizeof(tmp))
		return false;
	fp = fopen(tmp, "w");
	if (fp == NULL)
		return false;
	ok = fputs(text, fp) >= 0;
	ok = (fclose(fp) == 0) && ok;
	if (ok && rename(tmp, path) == 0)
		return true;
	unlink(tmp);
	return false;
}

static void
main_usage(FILE *out)
{
	fprintf(out,
			"usage: fake_gateway [--listen 127.0.0.1] [--port N] "
			"[--port-file FILE]\n"
			"                    [--pid-file FILE] [--hang-ms N]\n"
			"env FAKE_GATEWAY_TOKEN: require \"Authorization: Bearer <token>\"\n");
}

/* Parse a non-negative integer argument no larger than max, or exit. */
static long
main_number(const char *opt, const char *arg, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || end == arg || v < 0 || v > max)
	{
		fprintf(stderr, "fake_gateway: invalid value for \"%s\": \"%s\"\n",
				opt, arg);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"port-file", required_argument, NULL, 'f'},
		{"pid-file", required_argument, NULL, 'P'},
		{"hang-ms", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *listen_addr = "127.0.0.1";
	const char *port_file = NULL;
	const char *pid_file = NULL;
	long		port = 0;
	long		hang_ms = 30000;
	struct sockaddr_in sa;
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;
	struct rlimit rl;
	sigset_t	sigs;
	char		text[64];
	long		nthreads;
	int			sig;
	int			c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'l':
				listen_addr = optarg;
				break;
			case 'p':
				port = main_number("--port", optarg, 65535);
				break;
			case 'f':
				port_file = optarg;
				break;
			case 'P':
				pid_file = optarg;
				break;
			case 'H':
				hang_ms = main_number("--hang-ms", optarg, 600000);
				break;
			case 'h':
				main_usage(stdout);
				return 0;
			default:
				main_usage(stderr);
				return 2;
		}
	}
	if (optind < argc)
	{
		main_usage(stderr);
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	/*
	 * Loopback, or the benchmarking range 198.18.0.0/15 that the partition
	 * drills (tests/partition) use inside network namespaces they make.
	 */
	if (inet_pton(AF_INET, listen_addr, &sa.sin_addr) != 1 ||
		((ntohl(sa.sin_addr.s_addr) >> 24) != 127 &&
		 (ntohl(sa.sin_addr.s_addr) >> 17) != (UINT32_C(0xC612) >> 1)))
	{
		fprintf(stderr, "fake_gateway: refusing to listen on \"%s\": "
				"only loopback (127.x.x.x) or 198.18.0.0/15 addresses "
				"are allowed\n",
				listen_addr);
		return 2;
	}

	/* one descriptor per connection: raise the soft limit to the hard one */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* block before any thread exists, so that every thread inherits it */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (!ft_gw_delay_start())
	{
		fprintf(stderr, "fake_gateway: could not start the timer thread\n");
		return 1;
	}

	ft_faults_init((int) hang_ms, getenv("FAKE_GATEWAY_TOKEN"));
	if (!ft_webhooks_start())
	{
		fprintf(stderr, "fake_gateway: could not start the webhook thread\n");
		return 1;
	}

	/*
	 * One libmicrohttpd thread per core (at most 16).  Each connection gets
	 * an 8 kB memory pool instead of the default 32 kB: requests have small
	 * headers (bodies are handed to us in pieces and kept in our buffer;
	 * checked with a 67 kB body and a 7 kB header), a memset of the pool
	 * showed in profiles, and with hundreds of connections held open by
	 * latency_ms the smaller pools stay in the CPU caches.
	 */
	nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	nthreads = nthreads < 1 ? 1 : nthreads > 16 ? 16 : nthreads;
	daemon = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD |
							  MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
							  MHD_USE_ERROR_LOG,
							  0, NULL, NULL, ft_gw_access, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, main_log, NULL,
							  MHD_OPTION_SOCK_ADDR, &sa,
							  MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) nthreads,
							  MHD_OPTION_CONNECTION_LIMIT,
							  (unsigned int) FT_GW_MAX_CONNECTIONS,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 60,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 8192,
							  MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024,
							  MHD_OPTION_NOTIFY_COMPLETED, ft_gw_completed, NULL,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		fprintf(stderr, "fake_gateway: could not listen on %s:%ld\n",
				listen_addr, port);
		return 1;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0)
	{
		fprintf(stderr, "fake_gateway: could not read the bound port\n");
		MHD_stop_daemon(daemon);
		return 1;
	}
	port = info->port;

	snprintf(text, sizeof(text), "%d\n", (int) getpid());
	if (pid_file != NULL && !main_write_file(pid_file, text))
	{
		fprintf(stderr, "fake_gateway: could not write \"%s\": %s\n",
				pid_file, strerror(errno));
		MHD_stop_daemon(daemon);
		return 1;
	}
	snprintf(text, sizeof(text), "%ld\n", port);
	if (port_file != NULL && !main_write_file(port_file, text))
	{
		fprintf(stderr, "fake_gateway: could not write \"%s\": %s\n",
				port_file, strerror(errno));
		MHD_stop_daemon(daemon);
		return 1;
	}
	printf("fake_gateway listening on %s:%ld\n", listen_addr, port);
	fflush(stdout);

	while (sigwait(&sigs, &sig) != 0)
		;

	ft_gw_delay_stop();
	MHD_stop_daemon(daemon);
	ft_webhooks_stop();
	return 0;
}
