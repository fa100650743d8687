-- Append to a build's stream if the build exists. KEYS: hash, stream   ARGV: data
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('ERR no such record') end
return redis.call('APPEND', KEYS[2], ARGV[1])
