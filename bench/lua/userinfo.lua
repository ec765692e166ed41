-- GET /userinfo with the bearer access token $TOKEN. Static request (built once).
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
dofile((os.getenv("LUA_DIR") or ".") .. "/pace.lua")
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("TOKEN"), "TOKEN not set")
wrk.headers["Accept"] = "application/json"
done = report_done
