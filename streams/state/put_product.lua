-- Replaces an item's catalog fields unless a newer version is already stored.
-- KEYS: 1 item hash   ARGV: 1 ts (ms), then field, value pairs
local old = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
local ts = tonumber(ARGV[1])
if old > ts then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ts', ARGV[1], unpack(ARGV, 2))
return 1
