/*-------------------------------------------------------------------------
 *
 * outbox_batch.c
 *	  The batch-statement runner under the outbox's claim and record
 *	  (outbox_claim.c, outbox_record.c): each statement is prepared once
 *	  and kept, and takes one array parameter per column of the jobs of a
 *	  batch (FtJobColumn), whatever the batch size; and the
 *	  subtransaction in which a batch may fail alone (ft_outbox_try).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "gateway.h"
#include "spi_plan.h"
#include "worker.h"

/* a one-dimensional array of n elements of type elemtype */
Datum
ft_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/* a text Datum of s, or NULL (*isnull) when s is NULL */
static Datum
ft_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* the payment_attempts.request text of a job */
static const char *
ft_request_name(FtRequestKind kind)
{
	switch (kind)
	{
		case FT_REQ_CHARGE:
			return "charge";
		case FT_REQ_LOOKUP:
			return "lookup";
		case FT_REQ_REFUND:
			return "refund";
		case FT_REQ_REFUND_LOOKUP:
			return "refund_lookup";
		case FT_REQ_CANCEL:
			return "cancel";
	}
	return "charge";
}

/* the order_events detail of a settled job */
static char *
ft_detail(const FtJob *job)
{
	switch (job->outcome)
	{
		case FT_OUTCOME_PAID:
			return pstrdup("paid");
		case FT_OUTCOME_DECLINED:
			return pstrdup(job->error ? job->error : "declined");
		case FT_OUTCOME_CANCELED:
			return pstrdup("canceled: the gateway never charged it");
		default:
			return psprintf("failed: %s", job->error ? job->error : "unknown error");
	}
}

/*
 * Execute the outbox statement sql with nargs parameters (values, of
 * argtypes), preparing and keeping its plan in *plan the first time this
 * process runs it.  The result is left in SPI_tuptable / SPI_processed.
 * Raises an ERROR, "<what> failed", when SPI returns anything but
 * expected.  Caller is inside ft_xact_begin.
 */
void
ft_outbox_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			   Datum *values, int expected, const char *what)
{
	int			rc;

	if (*plan == NULL)
		*plan = ft_prepare_kept(sql, nargs, argtypes, FT_OUTBOX_PLAN);
	rc = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Each FtJobColumn: its element and array types and, for a column that is
 * a field of FtJob, the field's offset; with zero_is_null, a field of 0
 * (numbers) is SQL NULL.  A string field is NULL when its pointer is.  The
 * columns computed from a job (request, outcome, detail) have no field.
 */
static const struct
{
	Oid			elemtype;
	Oid			arraytype;
	size_t		offset;
	bool		zero_is_null;
}			ft_job_columns[] = {
	[FT_COL_EVENT_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, claim.event_id)},
	[FT_COL_ORDER_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, claim.order.order_id)},
	/* charges have none */
	[FT_COL_REFUND_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, claim.order.refund_id), true},
	[FT_COL_LEASE] = {TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, offsetof(FtJob, claim.lease_until)},
	[FT_COL_STARTED] = {TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, offsetof(FtJob, started_at)},
	[FT_COL_ORDER_ATTEMPT] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, claim.order_attempt)},
	/* 0: no HTTP reply */
	[FT_COL_HTTP_STATUS] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, http_status), true},
	[FT_COL_DELAY] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, delay_ms)},
	[FT_COL_LATENCY] = {FLOAT8OID, FLOAT8ARRAYOID, offsetof(FtJob, latency_ms)},
	[FT_COL_REQUEST] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_OUTCOME] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_DETAIL] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_PAYMENT_ID] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, payment_id)},
	[FT_COL_ERROR] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, error)},
	[FT_COL_NEXT_ACTION] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, next_action)},
	[FT_COL_CLIENT_SECRET] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, client_secret)},
	[FT_COL_UNCOUNTED] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, uncounted)},
};

StaticAssertDecl(lengthof(ft_job_columns) == FT_COL_UNCOUNTED + 1,
				 "one entry per job column");

/* the value of column col for one job; *isnull set */
static Datum
ft_job_datum(const FtJob *job, FtJobColumn col, bool *isnull)
{
	const char *field;
	int64		number;

	*isnull = false;
	switch (col)
	{
		case FT_COL_REQUEST:
			return CStringGetTextDatum(ft_request_name(job->kind));
		case FT_COL_OUTCOME:
			return CStringGetTextDatum(ft_outcome_name(job->outcome));
		case FT_COL_DETAIL:
			return CStringGetTextDatum(ft_detail(job));
		default:
			break;
	}

	/* a field of the job, read as its column's type */
	field = (const char *) job + ft_job_columns[col].offset;
	switch (ft_job_columns[col].elemtype)
	{
		case INT8OID:
			number = *(const int64 *) field;
			*isnull = (ft_job_columns[col].zero_is_null && number == 0);
			return Int64GetDatum(number);
		case INT4OID:
			number = *(const int32 *) field;
			*isnull = (ft_job_columns[col].zero_is_null && number == 0);
			return Int32GetDatum((int32) number);
		case TIMESTAMPTZOID:
			return TimestampTzGetDatum(*(const TimestampTz *) field);
		case FLOAT8OID:
			return Float8GetDatum(*(const double *) field);
		case TEXTOID:
			return ft_text_or_null(*(char *const *) field, isnull);
	}
	elog(ERROR, "unknown outbox job column %d", (int) col);
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * The parameters of a batch statement: values[k] is the array of column
 * cols[k] over the njobs jobs, argtypes[k] its array type.
 */
void
ft_job_arrays(FtJob **jobs, int njobs, const FtJobColumn *cols, int ncols,
			  Datum *values, Oid *argtypes)
{
	Datum	   *elems = palloc(njobs * sizeof(Datum));
	bool	   *nulls = palloc(njobs * sizeof(bool));

	for (int k = 0; k < ncols; k++)
	{
		Assert(OidIsValid(ft_job_columns[cols[k]].elemtype));
		for (int i = 0; i < njobs; i++)
			elems[i] = ft_job_datum(jobs[i], cols[k], &nulls[i]);
		/* construct_md_array copies: elems serves the next column */
		values[k] = ft_array(elems, nulls, njobs,
							 ft_job_columns[cols[k]].elemtype);
		argtypes[k] = ft_job_columns[cols[k]].arraytype;
	}
}

/*
 * Run the batch statement stmt over jobs, its parameters being the arrays
 * of its columns (ft_job_arrays), with ft_outbox_exec.
 */
void
ft_outbox_run_jobs(FtJobStatement *stmt, FtJob **jobs, int njobs)
{
	Datum		values[FT_JOB_MAX_COLUMNS];
	Oid			argtypes[FT_JOB_MAX_COLUMNS];

	Assert(stmt->ncols <= FT_JOB_MAX_COLUMNS);
	ft_job_arrays(jobs, njobs, stmt->cols, stmt->ncols, values, argtypes);
	ft_outbox_exec(&stmt->plan, stmt->sql, stmt->ncols, argtypes, values,
				   stmt->expected, stmt->what);
}

/*
 * Run fn(jobs, njobs) in a subtransaction, as PL/pgSQL runs a block with
 * an exception handler.  Returns true when it committed; false, with the
 * subtransaction rolled back and *error set to the error's message (cut
 * to printable ASCII), when it raised an error that may come from the
 * jobs' data.  An error that says nothing about them (a cancel, a
 * shutdown, lack of resources, a serialization failure or deadlock, a
 * lock_timeout an administrator set, an internal error) is raised again
 * after the rollback, as if there were no subtransaction.  Caller is
 * inside ft_xact_begin.
 */
bool
ft_outbox_try(void (*fn) (FtJob **jobs, int njobs), FtJob **jobs, int njobs,
			  char **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(jobs, njobs);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			class;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (class == ERRCODE_TRANSACTION_ROLLBACK ||
			class == ERRCODE_INSUFFICIENT_RESOURCES ||
			class == ERRCODE_OPERATOR_INTERVENTION ||
			class == ERRCODE_SYSTEM_ERROR ||
			class == ERRCODE_INTERNAL_ERROR ||
			edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		*error = ft_gateway_clean_text(edata->message ? edata->message : "unknown error",
									   FT_RECORD_ERROR_MAX);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}
