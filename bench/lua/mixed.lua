-- mixed.lua: 90% GET / 10% PUT of 1 KB values over KEYS keys, each wrk
-- thread one client that carries causal-metadata: the "causal-metadata" of
-- every response is sent with its next request.  Run with -t N -c N so
-- that each thread has exactly one connection (wrk's Lua state is per
-- thread, so this makes the metadata per connection).
dofile(os.getenv("BENCH_LUA") .. "/stats.lua")
local keys = tonumber(os.getenv("KEYS") or "10000")
local value = '"' .. string.rep("x", tonumber(os.getenv("VBYTES") or "1024")) .. '"'
local headers = { ["Content-Type"] = "application/json" }
local meta = "null"
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args) math.randomseed(seed or 1) end
request = function()
    local path = "/kvs/k" .. math.random(0, keys - 1)
    if math.random() < 0.9 then
        return wrk.format("GET", path, headers, '{"causal-metadata": ' .. meta .. '}')
    end
    return wrk.format("PUT", path, headers, '{"value": ' .. value .. ', "causal-metadata": ' .. meta .. '}')
end
response = function(status, hdrs, body)
    local m = body:match('"causal%-metadata": (%b{})')
    if m then meta = m end
end
