-- Admission for one provider call, atomically: circuit breaker, rate-limit buckets, budget reservations.
-- Nothing is written unless everything admits, so a denial consumes no tokens and reserves nothing.
--
-- ARGV:  1 prefix   2 endpoint slug   3 bucket id ('' = no rate limit)
--        4 rpm (0 = none)   5 tpm (0 = none)   6 refill safety factor (e.g. 0.98)   7 tokens needed
--        8 attempt id   9 (unused)   10 reservation ttl ms
--        11 probe ttl ms   12 number of budget scopes, then per scope: name, limit, period tag, init, amount
--           (init: used amount to start a missing or outdated scope from, -1 = ask the caller;
--            amount: what the call may cost against this scope, in nano-dollars, -1 = price unknown)
-- Returns: {1, probe}                   admitted (probe = 1 when this call is a half-open probe)
--          {0, 'health', wait_ms}       the endpoint's circuit is open
--          {0, 'rate', wait_ms}         the bucket is empty (or the provider said to back off)
--          {0, 'budget', scope, used, limit}
--          {0, 'unpriced', scope}       a limit applies but the price is unknown
--          {0, 'init', scope}           the scope needs its used amount from the ledger
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- circuit
local cb = p .. 'cb:' .. ARGV[2]
local c = redis.call('HMGET', cb, 'state', 'until', 'probe_until')
local probe = 0
if c[1] == 'o' then
  local until_ms = tonumber(c[2]) or 0
  if now < until_ms then return {0, 'health', until_ms - now} end
  probe = 1
elseif c[1] == 'h' then
  local probe_until = tonumber(c[3]) or 0
  if now < probe_until then return {0, 'health', math.min(1000, probe_until - now)} end
  probe = 1
end

-- rate-limit buckets: continuous refill at safety x limit, one second of burst
local bucket = ARGV[3]
local rl, r_level, t_level
local rpm, tpm = tonumber(ARGV[4]), tonumber(ARGV[5])
local safety, need = tonumber(ARGV[6]), tonumber(ARGV[7])
if bucket ~= '' then
  rl = p .. 'rl:' .. bucket
  local b = redis.call('HMGET', rl, 'r', 't', 'ts', 'blocked', 'lr', 'lt')
  local blocked = tonumber(b[4]) or 0
  if now < blocked then return {0, 'rate', blocked - now} end
  if rpm <= 0 then rpm = tonumber(b[5]) or 0 end
  if tpm <= 0 then tpm = tonumber(b[6]) or 0 end
  local ts = tonumber(b[3]) or now
  local elapsed = math.max(0, now - ts)
  if rpm > 0 then
    local per_ms = rpm * safety / 60000
    local cap = math.max(1, rpm / 60)
    r_level = math.min(cap, (tonumber(b[1]) or cap) + elapsed * per_ms)
    if r_level < 1 then return {0, 'rate', math.ceil((1 - r_level) / per_ms)} end
  end
  if tpm > 0 then
    local per_ms = tpm * safety / 60000
    local cap = math.max(need, tpm / 60)
    t_level = math.min(cap, (tonumber(b[2]) or cap) + elapsed * per_ms)
    if t_level < need then return {0, 'rate', math.ceil((need - t_level) / per_ms)} end
  end
end

-- budgets
local n = tonumber(ARGV[12])
local scopes = {}
for i = 0, n - 1 do
  local name, limit, period = ARGV[13 + 5 * i], tonumber(ARGV[14 + 5 * i]), ARGV[15 + 5 * i]
  local init, amount = tonumber(ARGV[16 + 5 * i]), tonumber(ARGV[17 + 5 * i])
  local key = p .. 'bud:' .. name
  local h = redis.call('HMGET', key, 'used', 'period')
  local used = tonumber(h[1])
  if used == nil or h[2] ~= period then
    if init < 0 then return {0, 'init', name} end
    used = init
    redis.call('HSET', key, 'used', used, 'period', period)
    if h[2] ~= period and h[1] then redis.call('DEL', key .. ':res', key .. ':conv') end
  end
  if amount < 0 then return {0, 'unpriced', name} end
  if used + amount > limit then return {0, 'budget', name, used, limit} end
  scopes[#scopes + 1] = {key, amount}
end

-- everything admits: write
if probe == 1 then redis.call('HSET', cb, 'state', 'h', 'probe_until', now + tonumber(ARGV[11])) end
if rl and (r_level or t_level) then
  local fields = {'ts', now}
  if r_level then fields[#fields + 1] = 'r'; fields[#fields + 1] = r_level - 1 end
  if t_level then fields[#fields + 1] = 't'; fields[#fields + 1] = t_level - need end
  redis.call('HSET', rl, unpack(fields))
end
for _, s in ipairs(scopes) do
  redis.call('HINCRBY', s[1], 'used', s[2])
  redis.call('ZADD', s[1] .. ':res', now + tonumber(ARGV[10]), ARGV[8] .. '|' .. s[2])
end
return {1, probe}
