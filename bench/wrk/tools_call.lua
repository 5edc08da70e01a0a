-- wrk script for `make bench`: MCP tools/call POSTs with a unique JSON-RPC id each.
--
--   wrk ... -s bench/wrk/tools_call.lua <url> -- <body bytes> [session id] [first id] [meta]
--
-- With "meta", params._meta carries a sampled traceparent (the client's context in _meta
-- only, as the mcp SDK sends it).
-- The body is a JSON-RPC 2.0 tools/call whose params.arguments.data string pads it to
-- about <body bytes> (the id's digits vary). Ids count up from [first id] and are
-- unique across wrk threads (each thread has its own block of 10^9).
-- At the end one line "BENCH_JSON {...}" carries the figures run_bench.py reads:
-- requests, duration, errors, and latency percentiles in microseconds.

local body_bytes = 1024
local session = "bench-session-0001"
local threads = {}
local counter = 0
local first_id = 0
local head, tail, pad

-- Runs in wrk's main Lua state; thread_base becomes a global of each thread's state.
function setup(thread)
   thread:set("thread_base", #threads * 1000000000)
   table.insert(threads, thread)
end

function init(args)
   if args[1] then body_bytes = tonumber(args[1]) end
   if args[2] then session = args[2] end
   if args[3] then first_id = tonumber(args[3]) end
   head = '{"jsonrpc":"2.0","id":'
   local meta = ""
   if args[4] == "meta" then
      meta = '"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},'
   end
   local middle = ',"method":"tools/call","params":{' .. meta .. '"name":"get_weather","arguments":{"city":"Paris","data":"'
   tail = '"}}}'
   -- 12 characters stand for the id.
   local fixed = #head + 12 + #middle + #tail
   pad = middle .. string.rep("x", math.max(0, body_bytes - fixed)) .. tail
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json, text/event-stream"
   wrk.headers["Mcp-Session-Id"] = session
   wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
end

function request()
   counter = counter + 1
   return wrk.format(nil, nil, nil, head .. string.format("%d", first_id + (thread_base or 0) + counter) .. pad)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.2f,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
