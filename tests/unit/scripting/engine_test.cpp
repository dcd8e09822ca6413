#include "scripting/engine.h"

#include <gtest/gtest.h>

namespace wsgate::scripting {
namespace {

TEST(Engine, RoutesByHeaderSmoke) {
  std::string error;
  auto script = checkScript("route.lua", R"(
function on_request(req)
  if req.headers["x-tenant"] == "beta" then return { pool = "beta" } end
end)",
                            Limits{}, error);
  ASSERT_TRUE(script) << error;
  auto engine = Engine::create(script, nullptr, error);
  ASSERT_TRUE(engine) << error;
  const Header headers[] = {{"X-Tenant", "beta"}};
  Request req{.method = "GET", .path = "/", .headers = headers};
  RequestResult r = engine->onRequest("on_request", req);
  ASSERT_FALSE(r.failed()) << r.error;
  EXPECT_EQ(r.pool.value_or(""), "beta");
}

}  // namespace
}  // namespace wsgate::scripting
