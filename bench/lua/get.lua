-- get.lua: GET /kvs/k<i>, i uniform in [0, KEYS), no body.
dofile(os.getenv("BENCH_LUA") .. "/stats.lua")
local keys = tonumber(os.getenv("KEYS") or "10000")
function setup(thread) thread:set("seed", math.random(1, 1e9)) end
function init(args) math.randomseed(seed or 1) end
request = function()
    return wrk.format("GET", "/kvs/k" .. math.random(0, keys - 1))
end
