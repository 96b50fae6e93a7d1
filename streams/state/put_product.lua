-- Replaces an item's catalog fields unless a newer version is already stored, and
-- remembers when an item first appeared in its top-level category.
-- KEYS: 1 item hash  2 new items of its category (zset), absent when uncategorised
-- ARGV: 1 ts (ms)  2 item id, then field, value pairs
local NEW_CAP = 200
local old = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
local ts = tonumber(ARGV[1])
if old > ts then return 0 end
if #KEYS >= 2 then
  if redis.call('ZADD', KEYS[2], 'NX', ts, ARGV[2]) == 1 then
    local card = redis.call('ZCARD', KEYS[2])
    if card > 2 * NEW_CAP then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, card - NEW_CAP - 1) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 3))
return 1
