-- Merges one worker's micro-batch of online K-means updates into the shared model,
-- records users' segments and feeds each segment's trending items, atomically.
--
-- KEYS: 1 seg:model (JSON)  2 seg:sizes (hash)  3 seg:trend:t0
-- ARGV: 1 model version the worker learnt on  2 centroid shifts (JSON [k][dim])
--       3 update counts (JSON [k])  4 number of users  5 number of trending events
--       6 trending time constant (seconds)
--       7 how long a user's last move is remembered (seconds)
--       then 4 values per user: pseudonym, segment, the event that places them ('' for
--       declared interests), and their redelivered events in this batch (comma-separated)
--       then 3 values per trending event: segment, item index, ts (unix seconds)
--
-- Several workers learn on copies of the model at once. Each sends the shift it made
-- to each centroid, and the shifts are added here: an update made on a copy a batch
-- old differs from the sequential one only by the product of two learning steps.
--
-- A move is remembered with the event that made it. Redis is written before the
-- SegmentChange is produced, so a worker that dies in between leaves a move that no
-- one heard of; when that event is redelivered, the user no longer moves, and the
-- remembered move is returned as the previous segment so that it is announced again.
--
-- A user's segment is written only while their sequence or declared preferences
-- exist, so an erasure that raced the batch is not undone. Returns {model JSON, previous segment per user ('' for
-- none, '-' when skipped)}, or {'stale', model JSON or ''} when the model is not the
-- version the worker learnt on (it was reseeded): nothing is written then.

local raw = redis.call('GET', KEYS[1])
if not raw then return {'stale', ''} end
local model = cjson.decode(raw)
if model.version ~= ARGV[1] then return {'stale', raw} end

local shifts = cjson.decode(ARGV[2])
local counts = cjson.decode(ARGV[3])
local moved = false
for c, row in ipairs(shifts) do
  if counts[c] and counts[c] > 0 then
    moved = true
    local centroid = model.centroids[c]
    for j, d in ipairs(row) do centroid[j] = centroid[j] + d end
    model.counts[c] = model.counts[c] + counts[c]
  end
end
if moved then
  raw = cjson.encode(model)
  redis.call('SET', KEYS[1], raw)
end

local n_users, n_trend, tau = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local memory = tonumber(ARGV[7])
local olds = {}
local base = 8
for u = 0, n_users - 1 do
  local at = base + 4 * u
  local uid, seg, event, replayed = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local key = 'u:{' .. uid .. '}:seg'
  local tag = 'u:{' .. uid .. '}:'
  if redis.call('EXISTS', tag .. 'seq', tag .. 'wish', tag .. 'subs') == 0 then
    olds[u + 1] = '-'
  else
    local old = redis.call('GET', key) or ''
    olds[u + 1] = old
    if old ~= seg then
      redis.call('SET', key, seg)
      if old ~= '' then redis.call('HINCRBY', KEYS[2], old, -1) end
      redis.call('HINCRBY', KEYS[2], seg, 1)
      if event ~= '' then
        redis.call('SET', tag .. 'segmv', old .. '|' .. event, 'EX', memory)
      else
        redis.call('DEL', tag .. 'segmv')
      end
    elseif replayed ~= '' then
      local last = redis.call('GET', tag .. 'segmv')
      if last then
        local prev, mover = string.match(last, '^([^|]*)|(.*)$')
        if mover and string.find(',' .. replayed .. ',', ',' .. mover .. ',', 1, true) then
          olds[u + 1] = prev
        end
      end
    end
  end
end

-- Same decay as the global trending set (see apply_interactions.lua), with its own
-- epoch so that rescaling every segment's set stays inside this script.
base = base + 4 * n_users
if n_trend > 0 then
  local newest = 0
  for e = 0, n_trend - 1 do
    local ts = tonumber(ARGV[base + 3 * e + 2])
    if ts > newest then newest = ts end
  end
  local t0 = tonumber(redis.call('GET', KEYS[3]) or newest)
  if newest - t0 > 30 * tau then
    for c = 0, #model.centroids - 1 do
      local key = 'seg:' .. c .. ':trend'
      redis.call('ZUNIONSTORE', key, 1, key, 'WEIGHTS', math.exp((t0 - newest) / tau))
    end
    t0 = newest
  end
  redis.call('SET', KEYS[3], t0)
  local sums = {}
  for e = 0, n_trend - 1 do
    local seg, item = ARGV[base + 3 * e], ARGV[base + 3 * e + 1]
    local ts = tonumber(ARGV[base + 3 * e + 2])
    local row = sums[seg]
    if row == nil then
      row = {}
      sums[seg] = row
    end
    row[item] = (row[item] or 0) + math.exp((ts - t0) / tau)
  end
  for seg, row in pairs(sums) do
    local key = 'seg:' .. seg .. ':trend'
    for item, w in pairs(row) do redis.call('ZINCRBY', key, w, item) end
  end
end
return {raw, olds}
