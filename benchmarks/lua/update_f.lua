-- Add to one build's integer field on the server and keep its sorted index in step:
-- what Model.objects.filter(id=...).update(number=F('number') + delta) does.
-- KEYS: hash, number zset   ARGV: id, field, delta
-- Reply: the number of builds updated (0 when the build does not exist: nothing written).
-- Errors: HINCRBY's own (the field is not an integer), before any write.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local value = redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], value, ARGV[1])
return 1
