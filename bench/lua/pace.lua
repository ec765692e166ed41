-- Pacing, for bench/latency.py: with $WRK_DELAY_MS set, each connection waits that many
-- milliseconds (a fraction is kept on average: wrk takes whole milliseconds) before each
-- request, so it sends 1 / (delay + latency) requests a second. Unset, wrk runs flat out.
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms then
  function delay()
    return math.floor(delay_ms + math.random())
  end
end
