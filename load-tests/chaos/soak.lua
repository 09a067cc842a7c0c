-- wrk script for soak.sh: a mix of object sizes over a key space much larger than the
-- memory budget, plus uncacheable requests.
--
-- Environment (read by every wrk thread):
--   SK_MODE     mix (default) or warmup (uncacheable requests only: fills nothing)
--   SK_N4K      4 KiB keys  /obj/s4-{k}?size=4096&max_age=..&tags=g{k % 64}
--   SK_N64K     64 KiB keys /obj/s64-{k}?size=65536&max_age=..
--   SK_N1K      1 KiB keys  /obj/s1-{k}?size=1024&max_age=..   (a small hot set)
--   SK_NUNC     uncacheable keys /obj/u-{k}?size=1024 (the origin answers no-store)
--   SK_MAX_AGE  origin freshness of the cacheable objects, s (600)
--   SK_SEED     seed offset
--   SK_MIX      percentages of 4 KiB, 64 KiB, 1 KiB and uncacheable requests ("70,5,15,10")
-- Mix: by default 70 % 4 KiB, 5 % 64 KiB, 15 % 1 KiB, 10 % uncacheable (warmup: 100 %
-- uncacheable).
-- done() prints one line:
--   RESULT requests=N s2xx=N s5xx=N other=N connect=N read=N write=N timeout=N p50_us=N p99_us=N max_us=N

local mode = os.getenv("SK_MODE") or "mix"
local n4k = tonumber(os.getenv("SK_N4K") or "163840")
local n64k = tonumber(os.getenv("SK_N64K") or "10240")
local n1k = tonumber(os.getenv("SK_N1K") or "1000")
local nunc = tonumber(os.getenv("SK_NUNC") or "1000")
local max_age = os.getenv("SK_MAX_AGE") or "600"
local seed = tonumber(os.getenv("SK_SEED") or "0")
local mix = {}
for p in string.gmatch(os.getenv("SK_MIX") or "70,5,15,10", "[^,]+") do
  table.insert(mix, tonumber(p))
end
local mix_total = (mix[1] or 0) + (mix[2] or 0) + (mix[3] or 0) + (mix[4] or 0)
-- Cumulative thresholds in [0, 1).
local c4k = (mix[1] or 0) / mix_total
local c64k = c4k + (mix[2] or 0) / mix_total
local c1k = c64k + (mix[3] or 0) / mix_total

local threads = {}
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + seed * 97 + id)
  s2xx, s5xx, other = 0, 0, 0
end

local function uncacheable()
  return "/obj/u-" .. math.random(0, nunc - 1) .. "?size=1024"
end

function request()
  local path
  if mode == "warmup" then
    path = uncacheable()
  else
    local r = math.random()
    if r < c4k then
      local k = math.random(0, n4k - 1)
      path = "/obj/s4-" .. k .. "?size=4096&max_age=" .. max_age .. "&tags=g" .. (k % 64)
    elseif r < c64k then
      path = "/obj/s64-" .. math.random(0, n64k - 1) .. "?size=65536&max_age=" .. max_age
    elseif r < c1k then
      path = "/obj/s1-" .. math.random(0, n1k - 1) .. "?size=1024&max_age=" .. max_age
    else
      path = uncacheable()
    end
  end
  return wrk.format("GET", path)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status >= 500 then
    s5xx = s5xx + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + (thread:get("s2xx") or 0)
    b = b + (thread:get("s5xx") or 0)
    c = c + (thread:get("other") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d s2xx=%d s5xx=%d other=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, a, b, c, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
