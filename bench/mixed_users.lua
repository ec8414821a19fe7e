-- wrk script for bench/scale.py: /auth/nginx requests from many users, some anonymous, with
-- the user named by Remote-User (the `header` resolver: no who-am-I call).
--   wrk -t1 -c32 -d5s -s bench/mixed_users.lua URL -- USER_FILE ANON_EVERY
-- USER_FILE: one "user<TAB>Cookie header value" per line (an app session + 2FA cookie), used
-- in turn; every ANON_EVERY-th request names nobody and carries no cookie (0: none).
-- Every request is formatted once, in init, with its headers in one fixed order: wrk.format
-- orders them by Lua's table order, which differs from one wrk process to the next, so each
-- run sent each user's headers in a new order (a new answer-cache key: a miss per user per
-- run, which no proxy causes); and formatting on every call made wrk the slower side.
local requests = {}
local anonymous = nil
local anon_every = 4
local sent, valid = 0, 0

local function format(user, cookie)
  local lines = {
    "GET /auth/nginx HTTP/1.1",
    "Host: " .. wrk.headers["Host"],
    "X-Original-URL: http://app.test/reports",
    "X-Original-Method: GET",
    "Accept: text/html",
  }
  if user then
    lines[#lines + 1] = "Remote-User: " .. user
    lines[#lines + 1] = "Cookie: " .. cookie
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

function init(args)
  for line in io.lines(args[1]) do
    local user, cookie = line:match("^([^\t]+)\t(.*)$")
    requests[#requests + 1] = format(user, cookie)
  end
  anonymous = format(nil, nil)
  anon_every = tonumber(args[2] or anon_every)
end

function request()
  sent = sent + 1
  if anon_every ~= 0 and sent % anon_every == 0 then
    return anonymous
  end
  valid = valid + 1
  return requests[(valid - 1) % #requests + 1]
end
