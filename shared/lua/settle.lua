-- After a provider call: settle budget reservations with the real cost, record the outcome in the
-- endpoint's circuit, and tighten the rate bucket from what the provider said.
--
-- ARGV:  1 prefix   2 endpoint slug   3 bucket id ('' = none)
--        4 outcome: 'ok' | 'fail' (counts against the circuit) | 'neutral' (e.g. a 400: the request, not
--          the endpoint) | 'limited' (429: back off the bucket)
--        5 retry-after ms for 'limited' (-1 = none); for 'ok', how many successes this settles (batched)
--        6 remaining requests (-1)   7 remaining tokens (-1)
--        8 provider's request limit (-1)   9 provider's token limit (-1)
--        10 attempt id   11, 12 (unused)   13 number of scopes, then per scope: name, real charge, reserved
--           amount (nano-dollars)
--        then the circuit parameters: consecutive, rate (0..1), window ms, min calls, cooldown ms, max cooldown ms
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local outcome = ARGV[4]
local result = 'ok'

-- budgets
local n = tonumber(ARGV[13])
for i = 0, n - 1 do
  local key = p .. 'bud:' .. ARGV[14 + 3 * i]
  local real, amount = tonumber(ARGV[15 + 3 * i]), tonumber(ARGV[16 + 3 * i])
  local member = ARGV[10] .. '|' .. amount
  if redis.call('ZREM', key .. ':res', member) == 1 then
    redis.call('HINCRBY', key, 'used', real - amount)
  elseif redis.call('ZREM', key .. ':conv', member) == 1 then
    -- the reservation had expired and was kept as spent (worst case); the real cost replaces it
    redis.call('HINCRBY', key, 'used', real - amount)
  elseif redis.call('EXISTS', key) == 1 then
    -- the reservation was lost (Redis restarted and the scope was rebuilt from the ledger without it)
    redis.call('HINCRBY', key, 'used', real)
  end
end

-- circuit
local base = 13 + 3 * n
local max_consecutive, max_rate = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
local window, min_calls = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
local cooldown, max_cooldown = tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6])
if outcome == 'ok' or outcome == 'fail' then
  local cb = p .. 'cb:' .. ARGV[2]
  local c = redis.call('HMGET', cb, 'state', 'fails', 'wb', 'ws', 'wf', 'pws', 'pwf', 'cool')
  local half = window / 2
  local wb = math.floor(now / half)
  local ws, wf, pws, pwf = tonumber(c[4]) or 0, tonumber(c[5]) or 0, tonumber(c[6]) or 0, tonumber(c[7]) or 0
  local cwb = tonumber(c[3]) or wb
  if wb ~= cwb then
    if wb == cwb + 1 then pws, pwf = ws, wf else pws, pwf = 0, 0 end
    ws, wf = 0, 0
  end
  if outcome == 'ok' then
    local count = math.max(1, tonumber(ARGV[5]))
    ws = ws + count
    if c[1] == 'h' then
      -- a success while half-open (the probe, or a call admitted just before) closes the circuit; a success
      -- of a call admitted before the circuit opened does not reopen it (it says nothing of the outage)
      redis.call('HSET', cb, 'state', 'c', 'fails', 0, 'cool', cooldown, 'wb', wb, 'ws', count, 'wf', 0, 'pws', 0,
        'pwf', 0)
    elseif c[1] == 'o' then
      redis.call('HSET', cb, 'wb', wb, 'ws', ws, 'wf', wf, 'pws', pws, 'pwf', pwf)
    elseif (tonumber(c[2]) or 0) > 0 or wb ~= cwb or c[3] == false then
      redis.call('HSET', cb, 'fails', 0, 'wb', wb, 'ws', ws, 'wf', wf, 'pws', pws, 'pwf', pwf)
    else
      redis.call('HINCRBY', cb, 'ws', count)
    end
  else
    wf = wf + 1
    local fails = (tonumber(c[2]) or 0) + 1
    local calls = ws + wf + pws + pwf
    local open = c[1] == 'h' or fails >= max_consecutive or (calls >= min_calls and (wf + pwf) / calls >= max_rate)
    if open and c[1] ~= 'o' then
      local cool = tonumber(c[8]) or cooldown
      if c[1] == 'h' then cool = math.min(max_cooldown, cool * 2) else cool = cooldown end
      redis.call('HSET', cb, 'state', 'o', 'until', now + cool, 'cool', cool, 'fails', fails,
        'wb', wb, 'ws', ws, 'wf', wf, 'pws', pws, 'pwf', pwf)
      redis.call('ZADD', p .. 'cb:open', now + cool, ARGV[2])
      result = 'opened'
    else
      redis.call('HSET', cb, 'fails', fails, 'wb', wb, 'ws', ws, 'wf', wf, 'pws', pws, 'pwf', pwf)
    end
  end
  if outcome == 'ok' and c[1] == 'h' then
    redis.call('ZREM', p .. 'cb:open', ARGV[2])
    result = 'closed'
  end
end

-- bucket
local bucket = ARGV[3]
if bucket ~= '' then
  local rl = p .. 'rl:' .. bucket
  if outcome == 'limited' then
    local wait = tonumber(ARGV[5])
    if wait < 0 then wait = 1000 end
    redis.call('HSET', rl, 'blocked', now + wait, 'r', 0, 'ts', now)
  end
  local rem_r, rem_t = tonumber(ARGV[6]), tonumber(ARGV[7])
  local lim_r, lim_t = tonumber(ARGV[8]), tonumber(ARGV[9])
  if rem_r >= 0 or rem_t >= 0 or lim_r > 0 or lim_t > 0 then
    local b = redis.call('HMGET', rl, 'r', 't')
    local fields = {}
    if rem_r >= 0 and (tonumber(b[1]) or math.huge) > rem_r then fields[#fields + 1] = 'r'; fields[#fields + 1] = rem_r end
    if rem_t >= 0 and (tonumber(b[2]) or math.huge) > rem_t then fields[#fields + 1] = 't'; fields[#fields + 1] = rem_t end
    if lim_r > 0 then fields[#fields + 1] = 'lr'; fields[#fields + 1] = lim_r end
    if lim_t > 0 then fields[#fields + 1] = 'lt'; fields[#fields + 1] = lim_t end
    if #fields > 0 then redis.call('HSET', rl, unpack(fields)) end
  end
end
return result
