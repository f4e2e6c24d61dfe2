-- wrk script: POST one body (file $BODY, read as bytes, so binary tensors pass unchanged) with a
-- bearer ($TOKEN) to the URL given to wrk. $CONTENT_TYPE (default application/json) is its
-- Content-Type; $EXTRA_HEADER ("Name: value"), when set, is sent too.
-- Prints rps, p50/p99 in microseconds and the error count (statuses >= 400 included) as one line.
-- No per-response Lua callback: it would slow wrk down on the same cores as the server.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local extra = os.getenv("EXTRA_HEADER")
if extra and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  assert(name, "EXTRA_HEADER must be \"Name: value\"")
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d errors=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99),
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
