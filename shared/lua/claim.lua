-- Lease up to n jobs for one worker: strict priority between levels; within a level, first jobs whose
-- time has come in the schedule (deferrals that are due, leases whose worker died), then fresh jobs by
-- fair share — the tenant that has received least service, then its least-served lane (batch).
-- A leased job sits in the schedule with score = lease expiry; the worker renews it while it runs and
-- removes it when done. If the worker dies, the lease expires and the job is due again.
-- ARGV: prefix, lease_ms, n, levels, quantum
-- Returns a flat list: priority, id, priority, id, ...
local prefix = ARGV[1]
local lease = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local levels = tonumber(ARGV[4])
local quantum = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + lease
local out = {}
local got = 0

for p = 0, levels - 1 do
  if got >= n then break end
  local qp = prefix .. 'q:' .. p
  local sched = qp .. ':sched'

  local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, n - got)
  if #due > 0 then
    local za = {}
    for _, id in ipairs(due) do
      za[#za + 1] = until_ms
      za[#za + 1] = id
      out[#out + 1] = p
      out[#out + 1] = id
    end
    redis.call('ZADD', sched, 'XX', unpack(za))
    got = got + #due
  end

  local tenants_key = qp .. ':tenants'
  local popped = 0
  while got < n do
    local head = redis.call('ZRANGE', tenants_key, 0, 1, 'WITHSCORES')
    if #head == 0 then break end
    local tenant, tvt = head[1], tonumber(head[2])
    local lanes_key = qp .. ':t:' .. tenant .. ':lanes'
    local lhead = redis.call('ZRANGE', lanes_key, 0, 1, 'WITHSCORES')
    if #lhead == 0 then
      redis.call('ZREM', tenants_key, tenant)
    else
      local lane, lvt = lhead[1], tonumber(lhead[2])
      -- serve the least-served until it passes the runner-up by a quantum (deficit round robin);
      -- alone at its level, it may take everything it needs at once
      local take = n - got
      if #lhead > 2 then take = math.min(take, math.max(1, tonumber(lhead[4]) - lvt + quantum)) end
      if #head > 2 then take = math.min(take, math.max(1, tonumber(head[4]) - tvt + quantum)) end
      local lane_key = qp .. ':t:' .. tenant .. ':l:' .. lane
      local ids = redis.call('ZPOPMIN', lane_key, take)
      local k = #ids / 2
      if k > 0 then
        popped = popped + k
        redis.call('ZINCRBY', lanes_key, k, lane)
        redis.call('ZINCRBY', tenants_key, k, tenant)
      end
      if k < take or redis.call('EXISTS', lane_key) == 0 then
        -- the lane is empty: retire it, and its tenant with its last lane
        redis.call('ZREM', lanes_key, lane)
        if redis.call('ZCARD', lanes_key) == 0 then redis.call('ZREM', tenants_key, tenant) end
      end
      if k > 0 then
        local candidates = {}
        for i = 1, #ids, 2 do candidates[#candidates + 1] = ids[i] end
        -- a duplicate of a job already leased or deferred (re-enqueued by the sweeper) is dropped here
        local scores = redis.call('ZMSCORE', sched, unpack(candidates))
        local za = {}
        for i, id in ipairs(candidates) do
          if not scores[i] then
            za[#za + 1] = until_ms
            za[#za + 1] = id
            out[#out + 1] = p
            out[#out + 1] = id
            got = got + 1
          end
        end
        if #za > 0 then redis.call('ZADD', sched, unpack(za)) end
      end
    end
  end
  if popped > 0 then redis.call('DECRBY', qp .. ':depth', popped) end
end
return out
