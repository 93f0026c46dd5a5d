"""The Lua scripts ``HotState`` runs: each one atomic step on an agent's lock, fence, memory
and schedule, so that no other writer can come between the check and the change (the lock
still held by this token, the fence raised with the lock taken)."""

TAKE_LOCK_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

# Given a time (ARGV[3]), a lock held by another makes the agent (ARGV[4]) due when that lock
# expires, pulled earlier only: asked in the same step, the lock cannot lapse in between (asked
# after, a lock that lapsed left the agent at its claim horizon).
LOCK_AND_LOAD_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return {redis.call('INCR', KEYS[2]), redis.call('GET', KEYS[3])}
end
if ARGV[3] ~= '' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    redis.call('ZADD', KEYS[4], 'XX', 'LT', tonumber(ARGV[3]) + left / 1000.0, ARGV[4])
  end
end
return {0, false}
"""

CONFIRM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

RAISE_FENCE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCR', KEYS[1])
"""

CLAIM_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, agent in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], agent) end
return due
"""

FINISH_ROUND_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] == '' then redis.call('ZREM', KEYS[3], ARGV[4])
else redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('DEL', KEYS[4]) end
redis.call('DEL', KEYS[1])
return 1
"""

STORE_AND_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
