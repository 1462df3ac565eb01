/*-------------------------------------------------------------------------
 *
 * orders_read.c
 *	  ft_orders.get_order(): read one order, on a primary or a replica.
 *
 * It only reads, so it works on a hot standby; it is SECURITY DEFINER so
 * that application roles can read orders without SELECT on the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "spi_plan.h"

PG_FUNCTION_INFO_V1(ft_orders_get_order);

static SPIPlanPtr ft_get_order_plan = NULL;

Datum
ft_orders_get_order(PG_FUNCTION_ARGS)
{
	Datum		arg;
	Datum		result = (Datum) 0;
	bool		isnull = true;
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"order_id\" must not be null")));
	arg = PG_GETARG_DATUM(0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (ft_get_order_plan == NULL)
	{
		Oid			argtypes[1] = {INT8OID};

		ft_get_order_plan = ft_prepare_kept("SELECT o FROM ft_orders.orders o"
											" WHERE o.order_id OPERATOR(pg_catalog.=) $1",
											1, argtypes, 0);
	}

	rc = SPI_execute_plan(ft_get_order_plan, &arg, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the order failed: %s", SPI_result_code_string(rc));

	if (SPI_processed == 1)
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = SPI_datumTransfer(result, false, -1);
	}
	SPI_finish();

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
