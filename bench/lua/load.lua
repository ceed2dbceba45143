-- load.lua: PUT keys 0 .. LOAD_N-1 exactly once each, split over the wrk
-- threads (thread t takes t, t+T, t+2T, ...), then stop.  Key i is
-- string.format(LOAD_FMT, i); the value a LOAD_VBYTES-character string.
-- Needs LOAD_THREADS = wrk -t.  Requests after a thread's share are GET
-- /health (cheap, and not counted); a thread stops when its share of PUTs
-- has been answered.  wrk calls request() once in thread 0 right after
-- init() only to check the script (script_verify_request); that first call
-- gets a GET /health so that no key is lost.
dofile(os.getenv("BENCH_LUA") .. "/stats.lua")
local n = tonumber(os.getenv("LOAD_N") or "10000")
local fmt = os.getenv("LOAD_FMT") or "k%d"
local nthreads = tonumber(os.getenv("LOAD_THREADS") or "1")
local body = '{"value": "' .. string.rep("x", tonumber(os.getenv("LOAD_VBYTES") or "1024")) .. '"}'
local headers = { ["Content-Type"] = "application/json" }
local tcount = 0
function setup(thread) thread:set("tid", tcount); tcount = tcount + 1 end
function init(args)
    nexti = tid
    share = 0
    for i = tid, n - 1, nthreads do share = share + 1 end
    answered = 0
    verifying = (tid == 0)
    if share == 0 then wrk.thread:stop() end
end
request = function()
    if verifying then
        verifying = false
        return wrk.format("GET", "/health")
    end
    if nexti < n then
        local i = nexti
        nexti = nexti + nthreads
        return wrk.format("PUT", "/kvs/" .. string.format(fmt, i), headers, body)
    end
    return wrk.format("GET", "/health")
end
response = function(status, headers, body)
    if body:find('"result"', 1, true) then
        answered = answered + 1
        if answered >= share then wrk.thread:stop() end
    end
end
