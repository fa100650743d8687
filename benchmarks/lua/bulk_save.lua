-- Save a batch of builds atomically: all unique/pointer checks first, then all writes.
-- KEYS: ids, number zset, unique hash
-- ARGV: build prefix, status index prefix, project prefix, then 8 per record:
--       id, ref, number, status, project id, started_at, stdout, stderr
local bp, ip, pp = ARGV[1], ARGV[2], ARGV[3]
for b = 4, #ARGV, 8 do
  if redis.call('HEXISTS', KEYS[3], ARGV[b + 1]) == 1 then
    return redis.error_reply('ERR unique ref taken')
  end
  if redis.call('EXISTS', pp .. ARGV[b + 4]) == 0 then
    return redis.error_reply('ERR pointer target missing')
  end
end
for b = 4, #ARGV, 8 do
  local id = ARGV[b]
  local key = bp .. id
  redis.call('HSETNX', KEYS[3], ARGV[b + 1], id)
  redis.call('HSET', key, 'project', ARGV[b + 4], 'number', ARGV[b + 2], 'status', ARGV[b + 3],
             'ref', ARGV[b + 1], 'started_at', ARGV[b + 5])
  if ARGV[b + 6] ~= '' then redis.call('SET', key .. ':stdout', ARGV[b + 6]) end
  if ARGV[b + 7] ~= '' then redis.call('SET', key .. ':stderr', ARGV[b + 7]) end
  redis.call('SADD', KEYS[1], id)
  redis.call('SADD', ip .. ARGV[b + 3], id)
  redis.call('ZADD', KEYS[2], ARGV[b + 2], id)
end
return (#ARGV - 3) / 8
