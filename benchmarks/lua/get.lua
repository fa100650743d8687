-- Get one build with its project (the pointer) and both streams.
-- KEYS: hash, stdout, stderr   ARGV: project key prefix
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
local project = {}
for i = 1, #h, 2 do
  if h[i] == 'project' then project = redis.call('HGETALL', ARGV[1] .. h[i + 1]) end
end
return {h, redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3]), project}
