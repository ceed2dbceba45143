-- put.lua: PUT /kvs/k<i> of a VBYTES-character string, i uniform in
-- [0, KEYS), no causal-metadata (every request independent).
dofile(os.getenv("BENCH_LUA") .. "/stats.lua")
local keys = tonumber(os.getenv("KEYS") or "10000")
local body = '{"value": "' .. string.rep("x", tonumber(os.getenv("VBYTES") or "1024")) .. '"}'
local headers = { ["Content-Type"] = "application/json" }
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args) math.randomseed(seed or 1) end
request = function()
    return wrk.format("PUT", "/kvs/k" .. math.random(0, keys - 1), headers, body)
end
