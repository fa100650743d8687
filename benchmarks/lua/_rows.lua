-- Prepended (by raw_redispy.py) to get_many, filter and range: full rows for a list of
-- ids, each {id, hash, stdout, stderr, project hash}, each project read once.
local function rows(bp, pp, ids)
  local projects, out = {}, {}
  for i = 1, #ids do
    local key = bp .. ids[i]
    local h = redis.call('HGETALL', key)
    if #h == 0 then
      out[#out + 1] = false
    else
      local pid = ''
      for j = 1, #h, 2 do if h[j] == 'project' then pid = h[j + 1] end end
      if projects[pid] == nil then projects[pid] = redis.call('HGETALL', pp .. pid) end
      out[#out + 1] = {ids[i], h, redis.call('GET', key .. ':stdout'),
                       redis.call('GET', key .. ':stderr'), projects[pid]}
    end
  end
  return out
end
