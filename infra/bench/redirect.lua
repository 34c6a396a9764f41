-- wrk script of `sluice bench redirect` (filled in and written to a temp dir per run).
-- Each request is GET /<code> for a code drawn uniformly at random from the list below
-- (the same list, and the same seeds, for sluice and nginx), with browser-like headers.
-- `done` prints one machine-readable line: BENCH_RESULT {json}.

local codes = {
--@CODES@
}
local user_agent = "--@USER_AGENT@"
local seed = --@SEED@

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count)
end

local prepared = {}
function init(args)
  math.randomseed(seed + 7919 * thread_index)
  for i, code in ipairs(codes) do
    prepared[i] = wrk.format("GET", "/" .. code, {
      ["User-Agent"] = user_agent,
      ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      ["Accept-Language"] = "en-US,en;q=0.9",
    })
  end
end

function request()
  return prepared[math.random(#prepared)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"mean_us":%.2f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
