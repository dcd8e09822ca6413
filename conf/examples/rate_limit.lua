-- Per-connection message rate limit: a client may send at most LIMIT messages per WINDOW
-- seconds on one WebSocket connection. The message over the limit is not forwarded: wsgate
-- closes the session with 4008 and a reason to the client, and with 1001 to the backend. (A
-- script closes with 1000 or 3000-4999; 4000-4999 are private codes, RFC 6455 7.4.2, so 4008
-- stands for 1008 "policy violation".) Messages from the backend are not counted.
--
-- State lives in conn.vars, a table per connection that on_open/on_message/on_close share
-- and wsgate frees when the session ends. To drop the excess messages instead of closing,
-- return "drop".

local LIMIT = 20    -- messages
local WINDOW = 1.0  -- seconds, counted from the first message of the window
local REASON = string.format("rate limit: at most %d messages in %g s", LIMIT, WINDOW)

function limit_messages(req)
  return nil -- nothing to change in the routing; the route needs a function for its hooks
end

function on_open(conn)
  conn.vars.count = 0
  conn.vars.window_start = nil
end

function on_message(conn, dir, msg)
  if dir ~= "client" then
    return nil
  end
  local v = conn.vars
  local now = wsgate.now()
  if v.window_start == nil or now - v.window_start >= WINDOW then
    v.window_start = now
    v.count = 0
  end
  v.count = v.count + 1
  if v.count > LIMIT then
    wsgate.log("info", "conn", conn.id, "from", conn.client_ip, "closed:", REASON)
    return { close = 4008, reason = REASON }
  end
  return nil
end
