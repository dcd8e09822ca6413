-- Canary by cookie: a fixed share of users goes to the canary pool, the same users every
-- time. The user's "session" cookie is hashed (32-bit FNV-1a: a spread, not a secret) into
-- a bucket 0-99; buckets below CANARY_PERCENT go to pool canary, the others stay on the
-- route's pool (stable). Requests without the cookie stay on stable.
--
-- Raising CANARY_PERCENT and reloading (SIGHUP) moves more users over; users already on
-- the canary stay there, since their bucket does not change. WebSocket sessions already open
-- keep their backend until they end.

local CANARY_PERCENT = 10
local COOKIE = "session"

-- 32-bit FNV-1a of `s`, in Lua 5.4's 64-bit integers.
local function fnv1a32(s)
  local h = 2166136261
  for i = 1, #s do
    h = ((h ~ string.byte(s, i)) * 16777619) & 0xffffffff
  end
  return h
end

function pick_canary(req)
  local id = req.cookies[COOKIE]
  if id == nil or id == "" then
    return nil
  end
  if fnv1a32(id) % 100 < CANARY_PERCENT then
    return { pool = "canary" }
  end
  return nil
end
