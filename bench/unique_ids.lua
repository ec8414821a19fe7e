-- wrk script for bench/forward_auth.py --unique-ids: every request gets its own X-Request-Id
-- (on top of the -H headers), so the sidecar's one-second answer cache, whose key is the whole
-- header set, never hits and each request is decided again (the who-am-I cache still serves).
local n = 0

function request()
  n = n + 1
  wrk.headers["X-Request-Id"] = "bench-" .. n
  return wrk.format(nil, nil)
end
