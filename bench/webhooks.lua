-- wrk script: a realistic mix of Opsgenie webhooks, one fresh body per request.
--
-- Each request picks one of ALERTS alert ids and an action (Create 30%, Acknowledge 20%,
-- AddNote 30%, Close 20%) and carries a unique, increasing updatedAt (19-digit ns, built as
-- a string because LuaJIT numbers are doubles), so the relay sees real folds, not duplicates.
-- Environment: BENCH_TOKEN (webhook token), BENCH_ALERTS (distinct alert ids, default 5000),
-- BENCH_PREFIX (alert id prefix, so runs on one database do not collide), BENCH_PATH (the
-- webhook route, default /webhooks/opsgenie; /webhooks/opsgenie/NAME for a service object's).

local token = os.getenv("BENCH_TOKEN") or "bench-token"
local alerts = tonumber(os.getenv("BENCH_ALERTS") or "5000")
local prefix = os.getenv("BENCH_PREFIX") or "bench"
local path = os.getenv("BENCH_PATH") or "/webhooks/opsgenie"
local threads = {}
local counter = 0
local base_ms = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = thread_id or 0  -- set per thread by setup() through thread:set
  math.randomseed(thread_id * 7919 + os.time())
  base_ms = os.time() * 1000
end

local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. token,
}

local template = [[{"action":"%s","alert":{"alertId":"%s-%d","message":"%s on host-%d",]]
  .. [["tags":["service:checkout","env:prod","team-%d"],"tinyId":"%d","entity":"host-%d",]]
  .. [["alias":"%s-alias-%d","createdAt":%d,"updatedAt":%d%06d,"username":"oncall@example.com",]]
  .. [["userId":"e760568d-4e19-413e-9ff9-2661f416edbb","description":"Disk usage above 90%%",]]
  .. [["team":"operations","responders":[{"id":"6ee84e52-f33e-45d9-87ab-533fd69d5591",]]
  .. [["type":"team","name":"operations"}],"teams":["6ee84e52-f33e-45d9-87ab-533fd69d5591"],]]
  .. [["actions":[],"details":{"region":"eu-west-1","runbook":"https://runbooks.example.com/disk"},]]
  .. [["priority":"P%d","source":"datadog"%s},"source":{"name":"","type":"api"},]]
  .. [["integrationName":"Datadog","integrationId":"cab111af-f56b-4886-b20a-f947ea3163e2",]]
  .. [["integrationType":"Webhook"}]]

function request()
  counter = counter + 1
  local n = math.random(1, alerts)
  local roll = math.random(1, 10)
  local action, extra = "Create", ""
  if roll > 8 then
    action = "Close"
  elseif roll > 5 then
    action = "AddNote"
    extra = [[,"note":"looking into it"]]
  elseif roll > 3 then
    action = "Acknowledge"
  end
  local body = string.format(template, action, prefix, n, "Disk almost full", n, n % 7, n, n,
    prefix, n, base_ms, base_ms, (thread_id * 100000 + counter) % 1000000,
    (n % 5) + 1, extra)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  -- One JSON line for bench/run.py; latency is in microseconds.
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,'
      .. '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
