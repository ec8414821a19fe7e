-- wrk script for bench/scale.py: /auth/nginx requests from many users, some anonymous, with
-- the user named by Remote-User (the `header` resolver: no who-am-I call).
--   wrk -t1 -c32 -d5s -s bench/mixed_users.lua URL -- USER_FILE ANON_EVERY
-- USER_FILE: one "user<TAB>Cookie header value" per line (an app session + 2FA cookie), used
-- in turn; every ANON_EVERY-th request names nobody and carries no cookie (0: none).
local users, cookies = {}, {}
local anon_every = 4
local sent, valid = 0, 0

function init(args)
  for line in io.lines(args[1]) do
    local user, cookie = line:match("^([^\t]+)\t(.*)$")
    users[#users + 1] = user
    cookies[#cookies + 1] = cookie
  end
  anon_every = tonumber(args[2] or anon_every)
end

function request()
  sent = sent + 1
  local headers = {
    ["X-Original-URL"] = "http://app.test/reports",
    ["X-Original-Method"] = "GET",
    ["Accept"] = "text/html",
  }
  if anon_every == 0 or sent % anon_every ~= 0 then
    valid = valid + 1
    local i = (valid - 1) % #users + 1
    headers["Remote-User"] = users[i]
    headers["Cookie"] = cookies[i]
  end
  return wrk.format("GET", "/auth/nginx", headers)
end
