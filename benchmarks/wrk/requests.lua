-- One benchmark scenario for wrk: cycles through the requests in the file named by
-- BENCH_REQUESTS (one per line: METHOD <tab> PATH [<tab> JSON BODY]), each with the bearer
-- token in BENCH_TOKEN (and the Accept header in BENCH_ACCEPT, where set), and prints a
-- JSON summary line when the run is done.
-- Written by benchmarks/run.py; see specs/performance.md.

local requests = {}
local counter = 0

init = function(args)
  local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    local these = { ["Authorization"] = headers["Authorization"] }
    if os.getenv("BENCH_ACCEPT") then
      these["Accept"] = os.getenv("BENCH_ACCEPT")
    end
    if body == "" then
      body = nil
    else
      these["Content-Type"] = "application/json"
    end
    requests[#requests + 1] = wrk.format(method, path, these, body)
  end
end

request = function()
  counter = counter + 1
  return requests[(counter - 1) % #requests + 1]
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"errors": %d, "non_2xx_3xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
