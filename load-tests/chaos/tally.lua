-- wrk script for chaos.sh: random keys, and a tally of what happened in each second.
--
-- Environment (read by every wrk thread):
--   CH_KEYS      keys 0 .. CH_KEYS-1, picked at random per request (300)
--   CH_PATH      path prefix; the key number is appended ("/obj/c")
--   CH_QUERY     query string ("size=1024&max_age=2")
--   CH_THINK_MS  pause of each connection between two requests, in ms (0 = none)
--   CH_SEED      makes the key sequences of several wrk processes differ
--
-- Per second (os.time() buckets) each thread counts:
--   sent          request() calls: every request written, including the attempts wrk makes
--                 while a listener is gone (each failed connection is one attempt)
--   status:<code> responses by status
--   cs:<class>    responses by Cache-Status: hit, shared (hit from Redis), swr, sie, fwd
--                 (sent to the origin), none (no Cache-Status)
--   lat:<b>       responses whose latency (request written to response complete) was in
--                 [2^b, 2^(b+1)) microseconds; latmax: the largest latency in us (a maximum, not
--                 a count). Latency needs one connection per thread (wrk -tN -cN): request() and
--                 response() then alternate. Measured with clock_gettime through LuaJIT's ffi.
-- done() prints them, one per line, plus one TOTAL line with wrk's own error counters:
--   SEC <epoch> <kind> <count>
--   TOTAL requests=N connect=N read=N write=N status=N timeout=N p50_us=N p99_us=N max_us=N

local keys = tonumber(os.getenv("CH_KEYS") or "300")
local prefix = os.getenv("CH_PATH") or "/obj/c"
local query = os.getenv("CH_QUERY") or "size=1024&max_age=2"
local think = tonumber(os.getenv("CH_THINK_MS") or "0")
local seed = tonumber(os.getenv("CH_SEED") or "0")

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } chaos_timespec;
int clock_gettime(int clk_id, chaos_timespec *tp);
]])
local ts = ffi.new("chaos_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end
local started = nil

local threads = {}
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + seed * 97 + id)
  tally = {}
end

local function bump(second, kind)
  local k = second .. " " .. kind
  tally[k] = (tally[k] or 0) + 1
end

function request()
  bump(os.time(), "sent")
  started = now_us()
  return wrk.format("GET", prefix .. math.random(0, keys - 1) .. "?" .. query)
end

function response(status, headers, body)
  local t = os.time()
  bump(t, "status:" .. status)
  local cs = headers["cache-status"] or headers["Cache-Status"]
  local class
  if cs == nil then
    class = "none"
  elseif string.find(cs, "stale-if-error", 1, true) then
    class = "sie"
  elseif string.find(cs, "stale-while-revalidate", 1, true) then
    class = "swr"
  elseif string.find(cs, "detail=shared", 1, true) then
    class = "shared"
  elseif string.find(cs, "; hit", 1, true) then
    class = "hit"
  else
    class = "fwd"
  end
  bump(t, "cs:" .. class)
  if started then
    local us = now_us() - started
    started = nil
    local b = 0
    while us >= 2 ^ (b + 1) do b = b + 1 end
    bump(t, "lat:" .. b)
    local k = t .. " latmax"
    if us > (tally[k] or 0) then tally[k] = math.floor(us) end
  end
end

if think > 0 then
  function delay()
    return think
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local t = thread:get("tally")
    if t then
      for k, v in pairs(t) do
        io.write("SEC ", k, " ", string.format("%d", v), "\n")
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    "TOTAL requests=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
