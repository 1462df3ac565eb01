#!/usr/bin/env node
// server.js: run stripe-stateful-mock on loopback only, for ft_orders' tests.
//
//   node server.js [--port N] [--port-file PATH]
//
// The package's own launcher (dist/autostart.js) listens on every interface;
// this one builds the same express app and listens on 127.0.0.1 only.  Port 0
// (the default) picks a free port, written to --port-file once listening.
//
// Test hook, not part of the mock: POST /_ft/delay_next?ms=M&count=N delays
// the reply to the next N POST /v1/charges or /v1/payment_intents requests by
// M ms *after* the mock has processed them (the charge exists, the caller
// times out: a lost reply).
"use strict";
const http = require("http");
const fs = require("fs");
const { createExpressApp } = require("stripe-stateful-mock");

let port = 0;
let portFile = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === "--port") port = parseInt(argv[++i], 10);
	else if (argv[i] === "--port-file") portFile = argv[++i];
	else {
		console.error(`usage: node server.js [--port N] [--port-file PATH]`);
		process.exit(2);
	}
}

const app = createExpressApp();
let delayMs = 0;
let delayCount = 0;

const server = http.createServer((req, res) => {
	const url = new URL(req.url, "http://127.0.0.1");
	if (req.method === "POST" && url.pathname === "/_ft/delay_next") {
		delayMs = parseInt(url.searchParams.get("ms") || "0", 10);
		delayCount = parseInt(url.searchParams.get("count") || "1", 10);
		res.writeHead(204);
		res.end();
		return;
	}
	if (req.method === "POST" && delayCount > 0 &&
		(url.pathname === "/v1/charges" || url.pathname === "/v1/payment_intents")) {
		const ms = delayMs;
		const end = res.end;
		delayCount--;
		console.log(`delaying the reply to ${req.method} ${url.pathname} by ${ms} ms`);
		res.end = function (...args) {
			setTimeout(() => end.apply(res, args), ms);
			return res;
		};
	}
	app(req, res);
});

server.listen(port, "127.0.0.1", () => {
	const p = server.address().port;
	console.log(`stripe-stateful-mock listening on 127.0.0.1:${p}`);
	if (portFile) fs.writeFileSync(portFile, `${p}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"])
	process.on(sig, () => process.exit(0));
