-- wrk script for bench/ingest.py: POST the ~1 KB checkout body with a new checkoutId on every request
-- ("<tag>-<thread>-<n>"), or in replay mode one of a few fixed ids ("<tag>-<k>"), so the server either
-- really inserts or takes its idempotent path. It counts non-2xx answers and records which checkoutIds
-- got a 2xx, and writes everything as JSON to <result file> when wrk ends.
-- The path and the Authorization header are arguments too, so the same script posts Klaviyo events and
-- Segment batches (whose answers name no checkout: then only the 2xx answers are counted).
-- args: <payload template> <insert|replay> <tag> <result file> <api key> <replay keys> [<path> <auth>]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  local f = assert(io.open(args[1]))
  template = f:read("*a")
  f:close()
  mode, tag, result_file, replay_keys = args[2], args[3], args[4], tonumber(args[6])
  path = args[7] or "/api/v1/checkouts"
  wrk.headers["Authorization"] = args[8] or ("Bearer " .. args[5])
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["revision"] = "2026-10-15"  -- Klaviyo's API asks for one; the others ignore it
  sent, non2xx, okn, ok = 0, 0, 0, {}
end

function request()
  sent = sent + 1
  local id
  if mode == "replay" then
    id = tag .. "-" .. (sent % replay_keys)
  else
    id = tag .. "-" .. tid .. "-" .. sent
  end
  local body = template:gsub("@ID@", id)
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    okn = okn + 1
    local id = body:match('"checkoutId":"([^"]*)"')
    if id then ok[id] = true end
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    local ids = {}
    for id in pairs(t:get("ok")) do ids[#ids + 1] = '"' .. id .. '"' end
    parts[#parts + 1] = string.format('{"tid":%d,"sent":%d,"non2xx":%d,"okn":%d,"ok":[%s]}',
      t:get("tid"), t:get("sent"), t:get("non2xx"), t:get("okn"), table.concat(ids, ","))
  end
  local e = summary.errors
  local out = assert(io.open(threads[1]:get("result_file"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"threads":[%s]}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
  out:close()
end
