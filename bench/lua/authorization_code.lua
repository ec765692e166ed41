-- POST /token grant_type=authorization_code with PKCE. Each code from $CODE_FILE (one per line) is
-- sent exactly once (split round-robin between wrk threads: set WRK_THREADS to wrk's -t); all codes
-- share one verifier ($CODE_VERIFIER) and redirect URI ($REDIRECT_URI). An exhausted file re-sends
-- the last code, which then fails with 400 and shows up as err_status.
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
dofile((os.getenv("LUA_DIR") or ".") .. "/pace.lua")
dofile((os.getenv("LUA_DIR") or ".") .. "/basic.lua")

local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

local codes, idx, headers, tail = {}, 0, nil, nil
function init(args)
  local step = tonumber(os.getenv("WRK_THREADS") or "1")
  local me = tonumber(rawget(_G, "tid")) or 0
  local n = 0
  local path = os.getenv("CODE_FILE")
  assert(path, "CODE_FILE not set")
  for line in io.lines(path) do
    if line ~= "" then
      if n % step == me then codes[#codes + 1] = line end
      n = n + 1
    end
  end
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = basic_auth(),
    ["Accept"] = "application/json",
  }
  tail = "&redirect_uri=" .. assert(os.getenv("REDIRECT_URI")) .. "&code_verifier=" .. assert(os.getenv("CODE_VERIFIER"))
end

function request()
  idx = idx + 1
  local code = codes[idx] or codes[#codes]
  return wrk.format("POST", nil, headers, "grant_type=authorization_code&code=" .. code .. tail)
end

done = report_done
