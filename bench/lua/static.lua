-- static.lua: plain GET of the URL given to wrk (the h2o baseline).
dofile(os.getenv("BENCH_LUA") .. "/stats.lua")
