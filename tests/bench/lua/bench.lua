-- The Lua hooks `bench.py --only lua` measures (tests/bench/lua/wsgate-lua.yaml loads this file).

-- on_request of the /lua route: picks the pool by a request header, as a canary or tenant
-- split would. The load sends `x-pool: b`, so every call reads the headers and returns a table.
function pick_pool(req)
  if req.headers["x-pool"] == "b" then
    return { pool = "b" }
  end
  return nil
end

-- on_request of the /ws-lua route: keeps the static decision (the route needs a `lua:`
-- function for the connection hooks below to run on its WebSockets).
function keep(req)
  return nil
end

-- Every WebSocket message on a route with `lua:` (the /ws-lua route): passes it on unchanged.
-- Defining it is what makes the relay collect and unmask messages on such routes; sessions of
-- routes without `lua:` (/ in the same config) must not pay for it.
function on_message(conn, dir, msg)
  return nil
end
