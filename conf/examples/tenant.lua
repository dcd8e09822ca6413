-- Tenant routing: the X-Tenant request header picks the tenant's own pool.
--
--   X-Tenant: acme      -> pool acme      (the backend gets X-Wsgate-Tenant: acme)
--   X-Tenant: Globex    -> pool globex    (names are compared lower-cased)
--   no X-Tenant         -> the route's pool (shared), X-Wsgate-Tenant removed
--   any other X-Tenant  -> 403 from wsgate, no backend sees the request
--
-- X-Wsgate-Tenant is what backends trust: wsgate sets or removes it, so a client cannot
-- forge it. (A fixed set of header values could also be routed with `match: { header: }`;
-- the script adds the table lookup, the refusal of unknown tenants and the trusted header.)

local TENANT_POOLS = {
  acme = "acme",
  globex = "globex",
}

function route_tenant(req)
  local tenant = req.headers["x-tenant"]
  if tenant == nil or tenant == "" then
    return { remove_headers = { "x-wsgate-tenant" } }
  end
  tenant = string.lower(tenant)
  local pool = TENANT_POOLS[tenant]
  if pool == nil then
    return {
      status = 403,
      body = "unknown tenant\n",
      headers = { ["content-type"] = "text/plain; charset=utf-8" },
    }
  end
  return { pool = pool, set_headers = { ["x-wsgate-tenant"] = tenant } }
end
