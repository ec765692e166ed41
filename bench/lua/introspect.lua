-- POST /introspect token=$TOKEN (RFC 7662), client_secret_basic as $CLIENT_ID (a resource server).
-- Static request (built once).
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
dofile((os.getenv("LUA_DIR") or ".") .. "/pace.lua")
dofile((os.getenv("LUA_DIR") or ".") .. "/basic.lua")
wrk.method = "POST"
wrk.body = "token=" .. assert(os.getenv("TOKEN"), "TOKEN not set")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = basic_auth()
wrk.headers["Accept"] = "application/json"
done = report_done
