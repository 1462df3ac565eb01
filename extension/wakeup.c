/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake a payment worker the moment an order-placing transaction commits.
 *
 * place_order() only marks the transaction; a transaction callback sets the
 * latch of one payment worker of the current database at COMMIT, after the new rows became visible
 * to other snapshots.  An aborted transaction wakes nobody.  Workers are
 * chosen round-robin so that a burst of commits spreads over all of them;
 * a worker without a gateway URL is left asleep, since it could not send
 * (it claims everything due once a URL is set).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/latch.h"
#include "storage/proc.h"

#include "shmem.h"
#include "wakeup.h"

static bool ft_wake_pending = false;
static bool ft_callback_registered = false;

static void
ft_wakeup_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (ft_wake_pending)
			{
				ft_wake_pending = false;
				ft_wake_one_worker();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction commits elsewhere; the poll finds it */
			ft_wake_pending = false;
			break;
		default:
			break;
	}
}

void
ft_wakeup_init(void)
{
	if (!ft_callback_registered)
	{
		RegisterXactCallback(ft_wakeup_xact_callback, NULL);
		ft_callback_registered = true;
	}
}

/*
 * Ask for a wake-up when the current transaction commits.  The database's
 * block is looked up now, inside the transaction: the commit callback may
 * not read the catalog.
 */
void
ft_wakeup_at_commit(void)
{
	if (ft_shmem_my_database() != NULL)
		ft_wake_pending = true;
}

/*
 * Set the latch of the next running payment worker of the current
 * database, round-robin.  Reads the slots without the lock (see shmem.h): this runs in every committing
 * backend and must stay cheap.
 */
void
ft_wake_one_worker(void)
{
	uint32		start;
	int			nslots = Min(ft_workers, FT_MAX_WORKERS);

	if (nslots <= 0 || ft_db == NULL)
		return;

	/*
	 * The launcher gives payment worker n slot n-1, so slots 0..nslots-1.
	 * Round robin, but skip a worker that is inside its SQL step if another
	 * one is not: that one claims at once, the busy one only after its
	 * transaction.  If all are busy, the first live one in turn.  Workers
	 * that cannot send (no gateway URL) are skipped.
	 */
	start = pg_atomic_fetch_add_u32(&ft_db->wake_next, 1);
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < nslots; i++)
		{
			FtWorkerSlot *slot = &ft_db->workers[(start + i) % nslots];
			PGPROC	   *proc = ((volatile FtWorkerSlot *) slot)->proc;

			if (proc == NULL || pg_atomic_read_u32(&slot->can_send) == 0)
				continue;
			if (pass == 0 && pg_atomic_read_u32(&slot->in_sql) != 0)
				continue;
			SetLatch(&proc->procLatch);
			return;
		}
	}
}
