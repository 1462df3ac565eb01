/*-------------------------------------------------------------------------
 *
 * delay.c
 *	  Delayed replies without blocking a thread: a handler suspends its
 *	  connection (MHD_suspend_connection) and a timer thread resumes it
 *	  when its deadline passes; libmicrohttpd then calls the handler again.
 *
 * Used for latency_ms and for lost replies (hang_ms).  Deadlines sit in a
 * binary min-heap behind delay_lock; each connection has at most one
 * pending delay, so the heap is bounded by the connection limit.  At
 * shutdown every pending connection is resumed at once and no new delay
 * is accepted, so that MHD_stop_daemon finds nothing suspended.
 *
 * Deadlines are rounded up to the next whole millisecond (DELAY_TICK_US):
 * one wake-up of the timer thread, and of the libmicrohttpd thread it
 * resumes connections on, then serves every reply due in that millisecond.
 * Waking once per delayed reply cost more CPU than the replies themselves
 * at thousands of requests a second, on the same cores as the system
 * under test.  A delayed reply is therefore 0 to 1 ms late, never early.
 *
 * tests/fake_gateway/delay.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <time.h>

#include "gateway.h"

#define DELAY_TICK_US	1000

typedef struct DelayItem
{
	int64_t		due_us;			/* CLOCK_MONOTONIC */
	struct MHD_Connection *conn;
} DelayItem;

static pthread_mutex_t delay_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t delay_cond;
static pthread_t delay_thread;
static DelayItem heap[FT_GW_MAX_CONNECTIONS];
static int	heap_len;
static bool stopping;

static int64_t
delay_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
delay_swap(int a, int b)
{
	DelayItem	t = heap[a];

	heap[a] = heap[b];
	heap[b] = t;
}

/* Remove the earliest item and resume its connection.  Caller holds lock. */
static void
delay_pop_resume(void)
{
	int			i = 0;

	MHD_resume_connection(heap[0].conn);
	heap[0] = heap[--heap_len];
	for (;;)
	{
		int			l = 2 * i + 1;
		int			m = i;

		if (l < heap_len && heap[l].due_us < heap[m].due_us)
			m = l;
		if (l + 1 < heap_len && heap[l + 1].due_us < heap[m].due_us)
			m = l + 1;
		if (m == i)
			break;
		delay_swap(i, m);
		i = m;
	}
}

static void *
delay_main(void *arg)
{
	pthread_mutex_lock(&delay_lock);
	while (!stopping)
	{
		int64_t		now = delay_now_us();

		while (heap_len > 0 && heap[0].due_us <= now)
			delay_pop_resume();
		if (heap_len == 0)
			pthread_cond_wait(&delay_cond, &delay_lock);
		else
		{
			struct timespec ts;

			ts.tv_sec = heap[0].due_us / 1000000;
			ts.tv_nsec = (heap[0].due_us % 1000000) * 1000;
			pthread_cond_timedwait(&delay_cond, &delay_lock, &ts);
		}
	}
	while (heap_len > 0)
		delay_pop_resume();
	pthread_mutex_unlock(&delay_lock);
	return NULL;
}

/*
 * Suspend conn (from inside its access handler) for ms milliseconds; the
 * handler must then return MHD_YES and is called again after the delay.
 * Returns false, without suspending, once shutdown has begun.
 */
bool
ft_gw_delay(struct MHD_Connection *conn, long ms)
{
	int			i;

	pthread_mutex_lock(&delay_lock);
	if (stopping || heap_len >= FT_GW_MAX_CONNECTIONS)
	{
		pthread_mutex_unlock(&delay_lock);
		return false;
	}
	MHD_suspend_connection(conn);
	i = heap_len++;
	heap[i].due_us = (delay_now_us() + ms * 1000 + DELAY_TICK_US - 1)
		/ DELAY_TICK_US * DELAY_TICK_US;
	heap[i].conn = conn;
	while (i > 0 && heap[(i - 1) / 2].due_us > heap[i].due_us)
	{
		delay_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	if (i == 0)
		pthread_cond_signal(&delay_cond);
	pthread_mutex_unlock(&delay_lock);
	return true;
}

bool
ft_gw_delay_start(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&delay_cond, &attr);
	pthread_condattr_destroy(&attr);
	return pthread_create(&delay_thread, NULL, delay_main, NULL) == 0;
}

/* Resume every delayed connection, refuse new delays, join the timer. */
void
ft_gw_delay_stop(void)
{
	pthread_mutex_lock(&delay_lock);
	stopping = true;
	pthread_cond_signal(&delay_cond);
	pthread_mutex_unlock(&delay_lock);
	pthread_join(delay_thread, NULL);
}
