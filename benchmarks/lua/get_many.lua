-- Get many builds, each with its project and both streams.
-- ARGV: build key prefix, project key prefix, id1, id2, ...
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
return rows(ARGV[1], ARGV[2], ids)
