-- Add job ids to a lane (one batch of one tenant at one priority) and make the lane and the tenant
-- schedulable. A newcomer joins at the current minimum virtual time: it neither waits behind the
-- service others already received nor gets credit for time it was absent.
-- ARGV: prefix, priority, tenant, lane, id...
local prefix, p, tenant, lane = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local qp = prefix .. 'q:' .. p
local lane_key = qp .. ':t:' .. tenant .. ':l:' .. lane
local members = {}
for i = 5, #ARGV do
  members[#members + 1] = 0
  members[#members + 1] = ARGV[i]
end
if #members == 0 then return 0 end
local added = redis.call('ZADD', lane_key, 'NX', unpack(members))

local function join(zkey, member)
  if redis.call('ZSCORE', zkey, member) then return end
  local head = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  local vt = 0
  if #head > 0 then vt = tonumber(head[2]) end
  redis.call('ZADD', zkey, vt, member)
end
join(qp .. ':t:' .. tenant .. ':lanes', lane)
join(qp .. ':tenants', tenant)
if added > 0 then redis.call('INCRBY', qp .. ':depth', added) end
return added
