-- Move leased jobs in the schedule to now + delay_ms: renew leases (delay = lease), defer a job until a
-- rate-limit bucket refills (delay = wait), or hand it back for immediate pick-up (delay = 0).
-- XX: a job another worker already finished and removed is not resurrected.
-- KEYS: sched key; ARGV: delay_ms, id...
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local za = {}
for i = 2, #ARGV do
  za[#za + 1] = at
  za[#za + 1] = ARGV[i]
end
if #za == 0 then return 0 end
return redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(za))
