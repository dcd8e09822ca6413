-- Room stickiness: every connection to one chat room (?room=NAME) lands on the same backend,
-- so a room's members share one process (its in-memory state, its broadcasts).
--
-- `sticky_key` works with any policy and needs no `sticky:` block in the pool: the key is
-- hashed onto the pool's consistent-hash (Maglev) table, so a room keeps its backend whatever
-- the policy would pick, and when that backend is down, draining or full, the room moves to
-- one stable substitute (the same for every member) while the other rooms stay put.
-- Requests without a room are balanced by the pool's policy (least_conn here).
--
-- With a `sticky:` block in the pool: a header, query or source_ip key of the pool is replaced
-- by the script's; a valid `sticky: { cookie: ... }` cookie still wins over it (the cookie
-- names a backend). The pool here has no `sticky:` block.

local MAX_ROOM_BYTES = 64

function room_affinity(req)
  local room = req.query.room
  if room == nil or room == "" then
    return nil
  end
  if #room > MAX_ROOM_BYTES or string.find(room, "[^%w_%-]") then
    return {
      status = 400,
      body = "room must be 1-64 letters, digits, '-' or '_'\n",
      headers = { ["content-type"] = "text/plain; charset=utf-8" },
    }
  end
  return { sticky_key = "room:" .. room }
end
