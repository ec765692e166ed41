-- basic_auth(): the Authorization header value for $CLIENT_ID:$CLIENT_SECRET (defaults: the anchor's client).
local b = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(data)
  return ((data:gsub('.', function(x)
    local r, byte = '', x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end

function basic_auth()
  local id = os.getenv("CLIENT_ID") or "bench-client"
  local secret = os.getenv("CLIENT_SECRET") or "bench-secret-0123456789abcdef0123456789abcdef"
  return "Basic " .. b64(id .. ":" .. secret)
end
