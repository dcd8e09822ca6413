-- Rewriting one JSON field of each message: every JSON object a client sends gets a
-- "received_at" field, the time wsgate received it in milliseconds since the epoch, so the
-- backend orders and audits messages by a clock the client does not control:
--   {"type":"chat","text":"hi"}        -> {"received_at":1733412345678,"type":"chat","text":"hi"}
--   {"received_at":1,"text":"forged"}  -> {"received_at":1733412345678,"text":"forged"}
-- A "received_at" whose value is not an integer is not a message this protocol allows: it is
-- dropped. Other messages (text that is not an object, binary, anything from the backend) pass
-- as they are.
--
-- String functions, not a JSON parser: the first "received_at": key is the one rewritten
-- (a string value cannot contain that text unescaped, but a nested object's key could), and
-- an object is recognised by its first byte. The sandbox refuses patterns whose worst-case
-- backtracking exceeds the call's budget, which for a message of a few hundred KiB rules out
-- unanchored patterns with '*', '+' or '-'. So the key is found with a plain find
-- (string.find(s, key, 1, true): no pattern at all) and the value is matched by a pattern
-- anchored at its position with one repetition: linear in the message size.
--
-- A script with on_message makes wsgate read every message of the route's sessions: they
-- are unmasked and copied for the call, and permessage-deflate is not negotiated for them.

local KEY = '"received_at":'

function stamp_route(req)
  return nil -- the routing is the route's; the function is what enables the hooks below
end

local function stamp()
  return string.format("%d", math.floor(wsgate.now() * 1000))
end

function on_message(conn, dir, msg)
  if dir ~= "client" or msg.opcode ~= "text" then
    return nil
  end
  local data = msg.data
  if string.byte(data, 1) ~= 123 then -- '{'
    return nil
  end
  local at = string.find(data, KEY, 1, true)
  if at == nil then
    if string.byte(data, 2) == 125 then -- '}': the empty object
      return "{" .. KEY .. stamp() .. "}"
    end
    return "{" .. KEY .. stamp() .. "," .. string.sub(data, 2)
  end
  local value = at + #KEY
  local _, last = string.find(data, "^ ?%-?%d+", value)
  if last == nil then
    wsgate.log("debug", "conn", conn.id, "sent a non-integer received_at: message dropped")
    return "drop"
  end
  return string.sub(data, 1, value - 1) .. stamp() .. string.sub(data, last + 1)
end
