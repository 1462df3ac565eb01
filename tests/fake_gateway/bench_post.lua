-- bench_post.lua: wrk script POSTing one payment per request to the fake
-- gateway, each with a fresh Idempotency-Key and order_id, unique across
-- runs (run stamp + wrk thread + counter).
--   wrk -t2 -c64 -d5s -s tests/fake_gateway/bench_post.lua http://127.0.0.1:PORT

local threads = 0
local run = os.time() % 1000000

function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
   thread:set("run", run)
end

local n = 0

function request()
   n = n + 1
   local id = string.format("%d%02d%09d", run, tid, n)
   local body = string.format(
      '{"order_id":%s,"payment_key":"bench-%s","customer_id":"c1",' ..
      '"amount_minor":1000,"currency":"EUR","payment_method":null,"items":[]}',
      id, id)
   return wrk.format("POST", "/payments",
      {["Content-Type"] = "application/json", ["Idempotency-Key"] = "bench-" .. id},
      body)
end
