-- wrk script for load-tests/run.sh: which paths to ask for, and a machine-readable summary.
--
-- Environment (read by every wrk thread):
--   LT_PATH     path template; "{k}" is replaced by the key (default: the URL's own path)
--   LT_KEYS     number of keys, 0 .. LT_KEYS-1 (default 1: the template as it is)
--   LT_MODE     cycle  : each thread walks its share of the keys round and round (hits)
--               once   : each thread asks for its share of the keys once, then stops (fills)
--               unique : every request a new key "<salt>-<thread>-<n>" (the miss path)
--   LT_THREADS  wrk's -t (the threads split the keys between them)
--   LT_SALT     makes unique keys differ between runs
--
-- With LT_KEYS=1 and LT_MODE=cycle no request() is defined, so wrk sends its one pre-built
-- request (its fastest path). response() is defined only in "once" mode: wrk parses the
-- headers and body of every response when it exists.
--
-- done() prints one line for the harness:
--   RESULT requests=N duration_us=N bytes=N p50_us=N p90_us=N p99_us=N max_us=N errors=N ...

local template = os.getenv("LT_PATH")
local keys = tonumber(os.getenv("LT_KEYS") or "1")
local mode = os.getenv("LT_MODE") or "cycle"
local nthreads = tonumber(os.getenv("LT_THREADS") or "1")
local salt = os.getenv("LT_SALT") or "0"

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local function path_for(k)
  return (string.gsub(template, "{k}", tostring(k)))
end

if mode == "unique" then
  local n = 0
  function request()
    n = n + 1
    return wrk.format(nil, path_for(salt .. "-" .. id .. "-" .. n))
  end
elseif keys > 1 or mode == "once" then
  local requests = {}
  local share = 0
  local next_i = 1
  local answered = 0

  function init(args)
    -- This thread's keys: id, id + nthreads, id + 2 nthreads, ...
    local k = id
    while k < keys do
      table.insert(requests, wrk.format(nil, path_for(k)))
      k = k + nthreads
    end
    share = #requests
    if share == 0 then
      -- More threads than keys: ask for key 0 so the thread has something to send.
      table.insert(requests, wrk.format(nil, path_for(0)))
    end
  end

  function request()
    local r = requests[next_i]
    next_i = next_i + 1
    if next_i > #requests then next_i = 1 end
    return r
  end

  if mode == "once" then
    function response(status, headers, body)
      answered = answered + 1
      if answered >= share then
        wrk.thread:stop()
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "mean_us=%.1f errors=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout))
end
