-- Move leased jobs in the schedule to now + delay_ms: renew leases (delay = lease), defer a job until a
-- rate-limit bucket refills (delay = wait), or hand it back for immediate pick-up (delay = 0).
-- mode 'xx': only jobs still in the schedule (a job another worker finished and removed is not
-- resurrected); mode 'any': renewal of jobs this worker is running, which re-creates a lease Redis lost
-- (restart, flush) so the sweeper does not re-enqueue a job that is in fact running.
-- KEYS: sched key; ARGV: delay_ms, mode, id...
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local za = {}
for i = 3, #ARGV do
  za[#za + 1] = at
  za[#za + 1] = ARGV[i]
end
if #za == 0 then return 0 end
if ARGV[2] == 'xx' then
  return redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(za))
end
return redis.call('ZADD', KEYS[1], 'CH', unpack(za))
