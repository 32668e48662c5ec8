-- wrk script for the WeChat simulator's throughput (see tools/sim/examples/sim_bench.rs).
-- Every request exchanges the next code of a pool minted beforehand, so the load measures the
-- success path (each code is used once), not the cheap 40163 path.
-- Usage: wrk -t1 -c64 -d10s -s tools/sim/benches/sim_wrk.lua http://127.0.0.1:9099 -- /tmp/sim_codes.txt [threads]

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local file = args[1] or "/tmp/sim_codes.txt"
  local stride = tonumber(args[2] or "1")
  paths = {}
  local n = 0
  -- Thread `id` takes lines id, id+stride, ... so threads never share a code.
  for line in io.lines(file) do
    if n % stride == id then
      paths[#paths + 1] = line
    end
    n = n + 1
  end
  i = 0
end

function request()
  i = i + 1
  -- Past the end of the pool the codes repeat and answer 40163: mint a bigger pool.
  return wrk.format("GET", paths[(i - 1) % #paths + 1])
end
