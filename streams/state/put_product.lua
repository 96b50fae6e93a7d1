-- Replaces an item's catalog fields unless a newer version is already stored, logs the
-- change for the workers' catalog caches, and remembers when an item first appeared
-- in its top-level category.
-- KEYS: 1 item hash  2 catalog version (counter)  3 catalog change log (zset version ->
--       item id)  4 highest version trimmed from the log  5 new items of its category
--       (zset), absent when uncategorised
-- ARGV: 1 ts (ms)  2 item id, then field, value pairs
local NEW_CAP = 200
local LOG_CAP = 100000
local old = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
local ts = tonumber(ARGV[1])
if old > ts then return 0 end
local version = redis.call('INCR', KEYS[2])
-- One entry per item: its latest change. A cache that saw every version up to v
-- refreshes exactly the items with an entry above v.
redis.call('ZADD', KEYS[3], version, ARGV[2])
if version % 1000 == 0 then
  local card = redis.call('ZCARD', KEYS[3])
  if card > LOG_CAP then
    local last = redis.call('ZRANGE', KEYS[3], card - LOG_CAP - 1, card - LOG_CAP - 1, 'WITHSCORES')
    redis.call('SET', KEYS[4], last[2])
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, card - LOG_CAP - 1)
  end
end
if #KEYS >= 5 then
  if redis.call('ZADD', KEYS[5], 'NX', ts, ARGV[2]) == 1 then
    local card = redis.call('ZCARD', KEYS[5])
    if card > 2 * NEW_CAP then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, card - NEW_CAP - 1) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 3))
return 1
