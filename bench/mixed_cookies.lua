-- wrk script for bench/memory.py: /auth/nginx requests from many users, some anonymous.
--   wrk -t1 -c32 -d120s -s bench/mixed_cookies.lua URL -- COOKIE_FILE LIMIT ANON_EVERY
-- COOKIE_FILE: one Cookie header value per line (a user's app session + 2FA cookie), used in
-- turn; every ANON_EVERY-th request carries no cookie at all (anonymous). The run stops after
-- LIMIT responses.
local cookies = {}
local limit = 100000
local anon_every = 4
local sent, valid, done = 0, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    cookies[#cookies + 1] = line
  end
  limit = tonumber(args[2] or limit)
  anon_every = tonumber(args[3] or anon_every)
end

function request()
  sent = sent + 1
  local headers = {
    ["X-Original-URL"] = "http://app.test/reports",
    ["X-Original-Method"] = "GET",
    ["Accept"] = "text/html",
  }
  if sent % anon_every ~= 0 then
    valid = valid + 1
    headers["Cookie"] = cookies[(valid - 1) % #cookies + 1]
  end
  return wrk.format("GET", "/auth/nginx", headers)
end

function response(status, headers, body)
  done = done + 1
  if done >= limit then
    wrk.thread:stop()
  end
end
