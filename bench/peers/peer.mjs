// peer.mjs: "charge this order once" with a Postgres-backed job queue or
// workflow library instead of ft_orders (bench/README.md, "Peers").
//
//   node peer.mjs SYSTEM setup        schema: orders table + the library's own
//   node peer.mjs SYSTEM load A B     orders A..B, each with its job in the
//                                     order's transaction (DBOS: orders only)
//   node peer.mjs SYSTEM work         the worker process: connects, prints
//                                     "ready", waits for SIGUSR2 ("go"), then
//                                     works until SIGTERM
//
// SYSTEM: pgboss | graphile | dbos.  Environment: PEER_DB (connection
// string of the system's own database), GW_URL (the fake gateway),
// PEER_RECOVERY=default|tuned (what a restarted worker does about the jobs
// a killed one held), and the tuning knobs below.  Every order is charged
// with Idempotency-Key = its payment key ("pay-<id>"), then marked paid.
import http from 'node:http';
import pg from 'pg';

const [system, cmd, ...args] = process.argv.slice(2);
const DB = process.env.PEER_DB;
const GW = new URL(process.env.GW_URL || 'http://127.0.0.1:8080');
const RECOVERY = process.env.PEER_RECOVERY || 'default';
const env = (k, d) => (process.env[k] !== undefined ? Number(process.env[k]) : d);
const KNOBS = {
	// pg-boss: localConcurrency workers x batchSize jobs each
	pgboss_workers: env('PGBOSS_WORKERS', 8),
	pgboss_batch: env('PGBOSS_BATCH', 32),
	// graphile-worker: concurrent jobs and the pool's local queue
	graphile_concurrency: env('GRAPHILE_CONCURRENCY', 128),
	graphile_local_queue: env('GRAPHILE_LOCAL_QUEUE', 500),
	// DBOS: workflows running at once in this process
	dbos_concurrency: env('DBOS_CONCURRENCY', 256),
};

// --- the gateway: node:http with a keep-alive agent ------------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

class Transient extends Error {
	constructor(status, retryAfter) {
		super(`gateway answered ${status}`);
		this.retryAfter = retryAfter;
	}
}

// charge(order) -> {ok: true, paymentId} | {ok: false, status} (final);
// throws Transient for what is worth a retry (5xx, 429, no reply)
function charge(o) {
	const body = JSON.stringify({ order_id: Number(o.id), amount_minor: o.amount, currency: o.currency, customer_id: 'cust-1' });
	return new Promise((resolve, reject) => {
		const req = http.request({
			agent, host: GW.hostname, port: GW.port, path: '/payments', method: 'POST',
			headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Idempotency-Key': o.key },
			timeout: 30000,
		}, (res) => {
			let data = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { data += c; });
			res.on('end', () => {
				if (res.statusCode === 200) {
					try {
						resolve({ ok: true, paymentId: JSON.parse(data).payment_id });
					} catch {
						reject(new Transient(200, 0));	// garbled: retry, the key makes it safe
					}
				} else if (res.statusCode >= 500 || res.statusCode === 429) {
					reject(new Transient(res.statusCode, Number(res.headers['retry-after'] || 0)));
				} else {
					resolve({ ok: false, status: res.statusCode });
				}
			});
		});
		req.on('timeout', () => req.destroy(new Transient('timeout', 0)));
		req.on('error', (e) => reject(e instanceof Transient ? e : new Transient(e.code, 0)));
		req.end(body);
	});
}

const ORDERS_DDL = `CREATE TABLE IF NOT EXISTS orders (
	id bigint PRIMARY KEY, payment_key text NOT NULL UNIQUE,
	amount_minor integer NOT NULL, currency text NOT NULL,
	status text NOT NULL DEFAULT 'pending', payment_id text)`;
const ORDERS_INSERT = `INSERT INTO orders (id, payment_key, amount_minor, currency)
	SELECT g, 'pay-' || g, 1000, 'EUR' FROM generate_series($1::bigint, $2::bigint) g`;

function pool(max = 20) {
	return new pg.Pool({ connectionString: DB, max });
}

// the outcome of one charge, written as the order's status
async function settle(db, o, r) {
	await db.query(`UPDATE orders SET status = $2, payment_id = $3 WHERE id = $1 AND status = 'pending'`,
		[o.id, r.ok ? 'paid' : 'failed', r.ok ? r.paymentId : null]);
}

// what the driver waits for: SIGUSR2 = go (caught from the start, so
// that it cannot kill a process still loading its library), SIGTERM = stop
let go;
const gone = new Promise((resolve) => { go = resolve; });
process.on('SIGUSR2', () => go());
function waitGo() {
	const alive = setInterval(() => {}, 1000);	// an empty event loop would end the process
	return gone.then(() => clearInterval(alive));
}
function onStop(fn) {
	process.once('SIGTERM', async () => { try { await fn(); } finally { process.exit(0); } });
}

// --- pg-boss ------------------------------------------------------------------
async function pgboss() {
	const { PgBoss } = await import('pg-boss');
	const tuned = RECOVERY === 'tuned';
	const boss = new PgBoss({
		connectionString: DB, max: KNOBS.pgboss_workers + 4,
		// tuned recovery: the monitor looks for expired jobs every 2 s
		...(tuned ? { monitorIntervalSeconds: 2 } : {}),
	});
	boss.on('error', (e) => console.error('pg-boss:', e.message));
	const queue = {
		// Retry-After is 1 s at the fake gateway: the nearest fixed delay
		retryLimit: 50, retryDelay: 1,
		// tuned recovery: a job whose worker died is retried after 5 s, not 15 min
		...(tuned ? { expireInSeconds: 5 } : {}),
	};
	if (cmd === 'setup') {
		const c = new pg.Client({ connectionString: DB });
		await c.connect(); await c.query(ORDERS_DDL); await c.end();
		await boss.start();
		await boss.deleteQueue('charge').catch(() => {});
		await boss.createQueue('charge', queue);
		await boss.stop({ graceful: false });
		return;
	}
	if (cmd === 'load') {
		await boss.start();
		const p = pool(4);
		const [a, b] = args.map(Number);
		for (let lo = a; lo <= b; lo += 1000) {
			const hi = Math.min(lo + 999, b);
			const c = await p.connect();
			try {
				await c.query('BEGIN');
				await c.query(ORDERS_INSERT, [lo, hi]);
				const jobs = [];
				for (let i = lo; i <= hi; i++)
					jobs.push({ data: { id: i, key: `pay-${i}`, amount: 1000, currency: 'EUR' } });
				// the jobs join the order's transaction through the db option
				await boss.insert('charge', jobs, { db: { executeSql: (text, values) => c.query(text, values) } });
				await c.query('COMMIT');
			} finally { c.release(); }
		}
		await p.end();
		await boss.stop({ graceful: false });
		return;
	}
	// work
	await boss.start();
	await boss.updateQueue('charge', queue).catch(() => {});
	const p = pool(KNOBS.pgboss_workers + 2);
	console.log('ready');
	onStop(() => boss.stop({ graceful: false, wait: false }));
	await waitGo();
	await boss.work('charge', {
		batchSize: KNOBS.pgboss_batch, localConcurrency: KNOBS.pgboss_workers,
		perJobResults: true, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5,
	}, async (jobs) => {
		const res = await Promise.all(jobs.map(async (j) => {
			try {
				const r = await charge(j.data);
				return { j, r };
			} catch (e) {
				return { j, err: e };
			}
		}));
		const paid = res.filter((x) => x.r && x.r.ok);
		if (paid.length)
			await p.query(`UPDATE orders o SET status = 'paid', payment_id = u.pid FROM unnest($1::bigint[], $2::text[]) u(id, pid)
				WHERE o.id = u.id AND o.status = 'pending'`, [paid.map((x) => x.j.data.id), paid.map((x) => x.r.paymentId)]);
		for (const x of res.filter((x) => x.r && !x.r.ok))
			await settle(p, x.j.data, x.r);
		return res.map((x) => ({ id: x.j.id, status: x.err ? 'failed' : 'completed' }));
	});
	await new Promise(() => {});
}

// --- graphile-worker -------------------------------------------------------------
async function graphile() {
	const { run, runMigrations, Logger } = await import('graphile-worker');
	// warnings and errors only: its default logs a line per job
	const logger = new Logger(() => (level, message) => {
		if (level === 'error' || level === 'warning')
			console.error(`graphile ${level}: ${message}`);
	});
	if (cmd === 'setup') {
		const c = new pg.Client({ connectionString: DB });
		await c.connect(); await c.query(ORDERS_DDL);
		await runMigrations({ connectionString: DB });
		await c.end();
		return;
	}
	if (cmd === 'load') {
		const c = new pg.Client({ connectionString: DB });
		await c.connect();
		const [a, b] = args.map(Number);
		for (let lo = a; lo <= b; lo += 1000) {
			const hi = Math.min(lo + 999, b);
			await c.query('BEGIN');
			await c.query(ORDERS_INSERT, [lo, hi]);
			// add_job in the order's transaction, job_key = the payment key
			await c.query(`SELECT graphile_worker.add_job('charge', json_build_object('id', g, 'key', 'pay-' || g, 'amount', 1000, 'currency', 'EUR'),
				job_key := 'pay-' || g, max_attempts := 50) FROM generate_series($1::bigint, $2::bigint) g`, [lo, hi]);
			await c.query('COMMIT');
		}
		await c.end();
		return;
	}
	const p = pool(8);
	if (RECOVERY === 'tuned') {
		// the documented way out of the 4-hour lock of a dead worker: tell
		// graphile-worker that the workers holding locks are gone (this
		// process has not started any yet)
		const r = await p.query(`SELECT graphile_worker.force_unlock_workers(array_agg(DISTINCT locked_by))
			FROM graphile_worker.jobs WHERE locked_by IS NOT NULL`);
		console.error('graphile: unlocked the jobs of dead workers', r.rowCount);
	}
	console.log('ready');
	let runner = null;
	onStop(async () => { if (runner) await runner.stop(); });
	await waitGo();
	runner = await run({
		connectionString: DB, concurrency: KNOBS.graphile_concurrency, noHandleSignals: true, logger,
		// the documented recommendation: concurrency + 2
		maxPoolSize: KNOBS.graphile_concurrency + 2, pollInterval: 500,
		preset: { worker: { localQueue: { size: KNOBS.graphile_local_queue }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
		taskList: {
			charge: async (o, helpers) => {
				const r = await charge(o);	// a throw = a retry with graphile's backoff
				await settle(helpers, o, r);
			},
		},
	});
	await runner.promise;
}

// --- DBOS Transact ---------------------------------------------------------------------
async function dbos() {
	const { DBOS } = await import('@dbos-inc/dbos-sdk');
	if (cmd === 'setup' || cmd === 'load') {
		const c = new pg.Client({ connectionString: DB });
		await c.connect();
		if (cmd === 'setup')
			await c.query(ORDERS_DDL);
		else {
			const [a, b] = args.map(Number);
			for (let lo = a; lo <= b; lo += 10000)
				await c.query(ORDERS_INSERT, [lo, Math.min(lo + 9999, b)]);
		}
		await c.end();
		return;
	}
	const p = pool(16);
	DBOS.setConfig({ name: 'bench-peers', systemDatabaseUrl: DB, logLevel: 'warn' });
	const chargeOrder = DBOS.registerWorkflow(async (o) => {
		// the workflow ID is the payment key, and so the Idempotency-Key
		const r = await DBOS.runStep(() => charge(o), {
			name: 'charge', retriesAllowed: true, intervalSeconds: 1, backoffRate: 1.5, maxAttempts: 50,
		});
		await DBOS.runStep(() => settle(p, o, r), { name: 'mark_paid' });
	}, { name: 'chargeOrder' });
	// launch recovers the workflows a killed process left PENDING
	await DBOS.launch();
	const queue = await DBOS.registerQueue('charge', { workerConcurrency: KNOBS.dbos_concurrency });
	console.log('ready');
	onStop(() => DBOS.shutdown());
	await waitGo();
	// enqueue every pending order: enqueue cannot join the order's
	// transaction, so it is part of the measured time; the same workflow
	// ID again (after a crash) is the same workflow, not a new one
	const { rows } = await p.query(`SELECT id, payment_key AS key, amount_minor AS amount, currency FROM orders WHERE status = 'pending' ORDER BY id`);
	for (const o of rows)
		await DBOS.startWorkflow(chargeOrder, { workflowID: o.key, queueName: queue.name })(o);
	await new Promise(() => {});
}

const systems = { pgboss, graphile, dbos };
if (!systems[system] || !['setup', 'load', 'work'].includes(cmd)) {
	console.error('usage: peer.mjs pgboss|graphile|dbos setup|load A B|work');
	process.exit(2);
}
systems[system]().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
