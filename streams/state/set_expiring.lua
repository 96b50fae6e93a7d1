-- Sets each key to its value with one expiry: the per-user lists of a micro-batch in
-- one command, where a SET per key costs the client more than Redis.
-- KEYS: the keys
-- ARGV: 1 time to live (s), then one value per key, in KEYS order
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
