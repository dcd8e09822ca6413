-- Token shape check on the WebSocket upgrade: the upgrade must carry a bearer token shaped
-- like a JWT (three base64url segments joined by dots), in the Authorization header
--   Authorization: Bearer eyJhbGciOi....eyJzdWIiOi....SflKxwRJSM...
-- or, for browsers (which cannot set headers on a WebSocket), in the query: /ws?token=....
-- Anything else gets 401 from wsgate, and no backend sees the upgrade. A token from the query
-- is passed on in Authorization too, so the backend reads it from one place.
--
-- This checks the shape only, no signature (the sandbox has no crypto): it keeps garbage and
-- token-less clients off the backends; the backend still verifies the token. Plain HTTP
-- requests on the route pass unchecked.
--
-- The sandbox refuses patterns whose worst-case backtracking could exceed the call's budget,
-- so a single pattern like "^[%w_-]+%.[%w_-]+%.[%w_-]+$" (three repetitions) is refused on
-- a long token: the dots are found with plain finds and each segment is checked with a
-- pattern that has no repetition at all.

local MAX_TOKEN_BYTES = 4096

local function is_base64url(s)
  return #s > 0 and string.find(s, "[^%w_%-]") == nil
end

local function jwt_shaped(token)
  if #token > MAX_TOKEN_BYTES then
    return false
  end
  local dot1 = string.find(token, ".", 1, true)
  if dot1 == nil then
    return false
  end
  local dot2 = string.find(token, ".", dot1 + 1, true)
  if dot2 == nil or string.find(token, ".", dot2 + 1, true) then
    return false
  end
  return is_base64url(string.sub(token, 1, dot1 - 1))
    and is_base64url(string.sub(token, dot1 + 1, dot2 - 1))
    and is_base64url(string.sub(token, dot2 + 1))
end

local function bearer(req)
  local auth = req.headers["authorization"]
  if auth ~= nil and string.lower(string.sub(auth, 1, 7)) == "bearer " then
    return string.sub(auth, 8), false
  end
  return req.query.token, true
end

local UNAUTHORIZED = {
  status = 401,
  body = "a bearer token (header Authorization or parameter token) is required\n",
  headers = {
    ["www-authenticate"] = 'Bearer realm="ws"',
    ["content-type"] = "text/plain; charset=utf-8",
  },
}

function check_token(req)
  if not req.is_websocket then
    return nil
  end
  local token, from_query = bearer(req)
  if token == nil or not jwt_shaped(token) then
    return UNAUTHORIZED
  end
  if from_query then
    return { set_headers = { authorization = "Bearer " .. token } }
  end
  return nil
end
