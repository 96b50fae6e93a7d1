-- Applies one preference event, last-writer-wins on the event time so that a replayed
-- or reordered event never undoes a newer one.
-- KEYS: 1 prefs hash  2 wishlist hash  3 subscriptions hash
--       4 set of users who withdrew consent (one read per scoring batch)
--       5 segment sizes  6 the user's segment  7.. every key of the user
-- ARGV: 1 kind  2 item id or ''  3 value or ''  4 ts (ms)  5 pseudonym
-- Hash values are "<ts>:<1|0>" so the newest decision per field is kept with its time.
local kind, item, value, ts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

if kind == 'erase' then
  local gone = 0
  local seg = redis.call('GET', KEYS[6])
  if seg then redis.call('HINCRBY', KEYS[5], seg, -1) end
  for i = 7, #KEYS do gone = gone + redis.call('DEL', KEYS[i]) end
  redis.call('SREM', KEYS[4], ARGV[5])
  return gone
end

local function lww(key, field, on)
  local old = redis.call('HGET', key, field)
  if old then
    local old_ts = tonumber(string.match(old, '^(%d+):'))
    if old_ts and old_ts > ts then return 0 end
  end
  redis.call('HSET', key, field, ts .. ':' .. on)
  return 1
end

if kind == 'wishlist_add' then return lww(KEYS[2], item, 1) end
if kind == 'wishlist_remove' then return lww(KEYS[2], item, 0) end
if kind == 'subscribe' then return lww(KEYS[3], value, 1) end
if kind == 'unsubscribe' then return lww(KEYS[3], value, 0) end
if kind == 'consent_given' then
  local changed = lww(KEYS[1], 'consent', 1)
  if changed == 1 then redis.call('SREM', KEYS[4], ARGV[5]) end
  return changed
end
if kind == 'consent_withdrawn' then
  local changed = lww(KEYS[1], 'consent', 0)
  if changed == 1 then redis.call('SADD', KEYS[4], ARGV[5]) end
  return changed
end
return redis.error_reply('unknown preference kind ' .. kind)
